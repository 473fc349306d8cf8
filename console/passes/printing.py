"""Printable passes: a card (85.6 x 54 mm, ID-1, at 300 dpi) as PNG and PDF.

The QR code is drawn module by module from ``segno`` (numeric mode, error correction
level Q: a quarter of the symbol may be scratched or folded away and it still reads),
never resampled, so every module is a whole number of printer dots.  Labels are in
Chinese and English because guards and holders read one or the other; drawing Chinese
needs a CJK font, which is looked up with fontconfig and a list of Debian paths, and
its absence is a typed error rather than a card full of empty boxes.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
from datetime import timedelta, tzinfo
from enum import StrEnum
from pathlib import Path

import segno
from PIL import Image, ImageDraw, ImageFont

from console.passes.office import RequestError, RequestReason
from console.photos import PhotoError, PhotoProblem, fitted, inspect
from protocol.errors import Rejection
from protocol.passes import Pass, Role

DPI = 300
CARD_MM = (85.6, 54.0)
CARD_PX = (round(CARD_MM[0] / 25.4 * DPI), round(CARD_MM[1] / 25.4 * DPI))  # 1011 x 638
QR_ERROR = "Q"
QR_BORDER = 4
"""The quiet zone ISO/IEC 18004 requires; scanners fail without it more often than with smudges."""

KNOWN_CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
"""Where Debian's fonts-noto-cjk, fonts-wqy-zenhei/microhei, fonts-droid-fallback and fonts-arphic-uming put them."""

ROLE_LABELS = {
    Role.RESIDENT: "住户 Resident",
    Role.SERVICE_WORKER: "服务人员 Service",
    Role.VISITOR: "访客 Visitor",
    Role.STAFF: "员工 Staff",
}

_INK = (20, 20, 20)
_MUTED = (105, 105, 105)
_BAND = (22, 62, 120)
_WHITE = (255, 255, 255)


class PrintReason(StrEnum):
    NO_CJK_FONT = "no_cjk_font"
    QR_NOT_NUMERIC = "qr_not_numeric"
    DOES_NOT_FIT = "does_not_fit"


class PrintError(Rejection[PrintReason], RuntimeError):
    """A pass card cannot be printed correctly here."""


# -- font -------------------------------------------------------------------------------------


def _has_cjk(path: str) -> bool:
    try:
        font = ImageFont.truetype(path, 24)
    except OSError:
        return False
    return font.getmask("姓名单元").getbbox() is not None


@functools.cache
def find_cjk_font() -> Path:
    """The font to draw Chinese with: ``$GATEPOST_CJK_FONT``, then fontconfig, then known paths."""
    candidates: list[str] = []
    if env := os.environ.get("GATEPOST_CJK_FONT"):
        candidates.append(env)
    if fc_list := shutil.which("fc-list"):
        try:
            out = subprocess.run(
                [fc_list, ":lang=zh", "-f", "%{file}\n"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
            candidates += sorted(line for line in out.splitlines() if line.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += KNOWN_CJK_FONTS
    for candidate in candidates:
        if Path(candidate).is_file() and _has_cjk(candidate):
            return Path(candidate)
    raise PrintError(
        PrintReason.NO_CJK_FONT,
        "no font with Chinese glyphs found; install fonts-noto-cjk or fonts-wqy-zenhei "
        "(or set GATEPOST_CJK_FONT to a .ttf/.ttc file)",
    )


KNOWN_LATIN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
)


@functools.cache
def find_latin_font() -> Path | None:
    """A font for Latin text: some CJK fonts (Droid Sans Fallback) carry no Latin glyphs at all."""
    for candidate in KNOWN_LATIN_FONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


@functools.cache
def _font_file(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _font(size: int) -> ImageFont.FreeTypeFont:
    return _font_file(find_cjk_font(), size)


@functools.cache
def _has_glyph(path: Path, char: str) -> bool:
    """Whether ``path`` draws ``char`` as itself rather than as its 'missing glyph' box."""
    font = _font_file(path, 24)
    missing = font.getmask("\U0010fffd")
    mask = font.getmask(char)
    return not (mask.size == missing.size and bytes(mask) == bytes(missing))


def _runs(text: str, size: int) -> list[tuple[str, ImageFont.FreeTypeFont]]:
    """Split ``text`` into runs drawn with the Latin font where it has the glyph, else the CJK font."""
    latin, cjk = find_latin_font(), find_cjk_font()
    runs: list[tuple[str, Path]] = []
    for char in text:
        path = latin if latin is not None and _has_glyph(latin, char) else cjk
        if runs and (runs[-1][1] == path or char == " "):
            runs[-1] = (runs[-1][0] + char, runs[-1][1])
        else:
            runs.append((char, path))
    return [(chunk, _font_file(path, size)) for chunk, path in runs]


def _width(draw: ImageDraw.ImageDraw, text: str, size: int) -> float:
    return sum(draw.textlength(chunk, font=font) for chunk, font in _runs(text, size))


def _text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    size: int,
    fill: tuple[int, int, int],
    anchor: str = "la",
) -> None:
    """Draw mixed Chinese and Latin text on one baseline; ``anchor`` as Pillow's (l/m/r, a/m/t)."""
    x, y = xy
    width = _width(draw, text, size)
    x -= {"l": 0, "m": width / 2, "r": width}[anchor[0]]
    ascent, descent = _font(size).getmetrics()
    baseline = y + (ascent - descent) / 2 if anchor[1] == "m" else y + ascent
    for chunk, font in _runs(text, size):
        draw.text((x, baseline), chunk, font=font, fill=fill, anchor="ls")
        x += draw.textlength(chunk, font=font)


def _fit(draw: ImageDraw.ImageDraw, text: str, size: int, width: int) -> int:
    """The largest size, at most ``size``, at which ``text`` fits ``width`` pixels (down to 14 px)."""
    while size > 14 and _width(draw, text, size) > width:
        size -= 2
    return size


# -- QR ---------------------------------------------------------------------------------------


def make_qr(text: str) -> segno.QRCode:
    """The pass's QR symbol: numeric mode, level Q exactly (no silent boost, so sizes stay predictable)."""
    qr = segno.make_qr(text, error=QR_ERROR.lower(), mode="numeric", boost_error=False)
    if qr.mode != "numeric" or qr.error != QR_ERROR:
        raise PrintError(PrintReason.QR_NOT_NUMERIC, f"segno encoded {qr.mode} at level {qr.error}")
    return qr


def qr_image(qr: segno.QRCode, scale: int) -> Image.Image:
    rows = [
        bytes(0 if dark else 255 for dark in row) for row in qr.matrix_iter(scale=scale, border=QR_BORDER)
    ]
    return Image.frombytes("L", (len(rows[0]), len(rows)), b"".join(rows))


# -- photo ------------------------------------------------------------------------------------


def check_photo(data: bytes, name: str = "photo") -> None:
    """Refuse, before a serial is spent on it, a photo the card could not be printed with.

    The header alone is read (console/photos.py: format, pixels, memory); a PNG's chunks
    are also checked whole (``verify``), which decompresses nothing.
    """
    try:
        inspect(data)
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except PhotoError as exc:
        if exc.reason in (PhotoProblem.FORMAT, PhotoProblem.UNREADABLE):
            raise RequestError(RequestReason.BAD_PHOTO, "photo", f"{name} is not a readable image") from None
        raise RequestError(RequestReason.BAD_PHOTO, "photo", f"{name}: {exc.detail}") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise RequestError(RequestReason.BAD_PHOTO, "photo", f"{name} is not a readable image") from None


def _photo(data: bytes, size: tuple[int, int]) -> Image.Image:
    try:
        return fitted(data, size)
    except PhotoError as exc:
        raise RequestError(RequestReason.BAD_PHOTO, "photo", exc.detail) from None


# -- the card ---------------------------------------------------------------------------------


def validity_text(p: Pass, zone: tzinfo) -> str:
    """First and last valid minute, site-local: ``valid_until`` is exclusive, a card should not be."""
    start = p.valid_from.astimezone(zone)
    last = (p.valid_until - timedelta(minutes=1)).astimezone(zone)
    return f"{start:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M}"


def window_text(p: Pass) -> str | None:
    if p.daily_window is None:
        return None
    w = p.daily_window
    return f"{w.start // 60:02d}:{w.start % 60:02d} – {w.end // 60:02d}:{w.end % 60:02d}"


def render_card(p: Pass, text: str, *, site: str, zone: tzinfo, photo: bytes | None = None) -> Image.Image:
    """The card as an RGB image at 300 dpi."""
    width, height = CARD_PX
    card = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(card)
    margin, band = 30, 80

    draw.rectangle((0, 0, width, band), fill=_BAND)
    _text(draw, (margin, band // 2), site, _fit(draw, site, 40, 560), _WHITE, "lm")
    _text(draw, (width - margin, band // 2), "通行证  PASS", 36, _WHITE, "rm")

    qr = make_qr(text)
    modules = qr.symbol_size(border=QR_BORDER)[0]
    caption = 34
    scale = (height - band - caption - 12) // modules
    if scale < 5:
        raise PrintError(
            PrintReason.DOES_NOT_FIT, f"QR {qr.designator} needs {modules} modules; too large for a card"
        )
    symbol = qr_image(qr, scale)
    qr_x = width - margin + scale * QR_BORDER - symbol.width
    qr_y = band + 6
    card.paste(symbol, (qr_x, qr_y))
    serial = f"编号 No. {p.serial}" + (f"-{p.generation}" if p.generation else "")
    _text(draw, (qr_x + symbol.width // 2, qr_y + symbol.height + 2), serial, 26, _INK, "mt")

    left_right = qr_x + scale * QR_BORDER - 16
    x, y = margin, band + 22
    if photo is not None:
        pw, ph = 150, 190
        card.paste(_photo(photo, (pw, ph)), (x, y))
        draw.rectangle((x - 1, y - 1, x + pw, y + ph), outline=_MUTED)
        head_x = x + pw + 18
    else:
        head_x = x
    head_w = left_right - head_x

    def field(fx: int, fy: int, label: str, value: str, size: int, w: int) -> int:
        _text(draw, (fx, fy), label, 20, _MUTED)
        _text(draw, (fx, fy + 24), value, _fit(draw, value, size, w), _INK)
        return fy + 24 + size + 14

    unit_label = "单元 Unit" if p.role is Role.RESIDENT else "单位 Employer"
    hy = field(head_x, y, "姓名 Name", p.holder, 40, head_w)
    hy = field(head_x, hy, unit_label, p.unit, 30, head_w)
    hy = field(head_x, hy, "身份 Role", ROLE_LABELS[p.role], 28, head_w)

    y = max(hy, y + (190 + 16 if photo is not None else 0))
    full_w = left_right - x
    y = field(x, y, "有效期 Valid", validity_text(p, zone), 26, full_w)
    if (window := window_text(p)) is not None:
        y = field(x, y, "每日时段 Daily hours", window, 26, full_w)
    zones = ", ".join(str(z) for z in sorted(p.zones))
    extra = "  · 需手机动态码 phone code" if p.dynamic else ""
    field(x, y, "区域 Zones", zones + extra, 26, full_w)
    return card


def write_card(card: Image.Image, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """``<stem>.png`` and ``<stem>.pdf`` in ``out_dir``, each written whole or not at all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, fmt in ((".png", "PNG"), (".pdf", "PDF")):
        path = out_dir / f"{stem}{suffix}"
        tmp = out_dir / f".{stem}{suffix}.tmp"
        if fmt == "PNG":
            card.save(tmp, fmt, dpi=(DPI, DPI))
        else:
            card.save(tmp, fmt, resolution=DPI)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]


def print_pass(
    p: Pass, text: str, out_dir: Path, *, site: str, zone: tzinfo, photo: bytes | None = None
) -> tuple[Path, Path]:
    """Render and write one pass: ``<serial>.png`` and ``<serial>.pdf``."""
    card = render_card(p, text, site=site, zone=zone, photo=photo)
    stem = str(p.serial) if not p.generation else f"{p.serial}-{p.generation}"
    return write_card(card, out_dir, stem)
