"""Holder photos decoded within bounds: pixels and memory checked from the header, a few at a time.

A photo is compressed: a 48 KB PNG can claim 6000×6000 pixels, and Pillow decodes what
the header claims.  Twelve such uploads at once took the console to 2.49 GB (issue 13).
Every photo the console decodes — the printed card's, the guard screen's thumbnail —
goes through :func:`fitted`, which:

1. opens the image (header only) and accepts JPEG, PNG and WebP alone: no TIFF, no
   animation formats, nothing with a decoder of its own to exploit;
2. refuses more than :data:`MAX_PIXELS` pixels before a single one is decoded — 16 Mpx,
   a phone's 12-Mpx photo with room to spare;
3. asks a JPEG for a reduced decode (Pillow's ``draft``: libjpeg scales by 1/2, 1/4 or
   1/8 while decoding), just large enough for the picture it will become, so a 12-Mpx
   photo decodes as about 0.2 Mpx;
4. estimates the memory of the decode that will actually happen (pixels after the draft
   times Pillow's bytes per pixel, plus libjpeg's coefficient buffers for a
   progressive JPEG, which are full size whatever the draft) and refuses more than
   :data:`MAX_DECODE_BYTES`;
5. decodes at most :data:`DECODERS` photos at once in the process; the others wait.

So the memory photo decoding can take is about ``DECODERS × MAX_DECODE_BYTES``, whatever
is uploaded.  Pages that accept uploads also take an :func:`upload_slot` first: at most
:data:`UPLOADS` uploads are being handled at once, and the next one is told "busy"
before anything is spent on it (no thread waits, no serial is issued).

``Image.MAX_IMAGE_PIXELS`` is lowered to :data:`MAX_PIXELS` too, so that any other
Pillow use in a console process refuses a decompression bomb (Pillow warns above it and
raises above twice it).  Reference: Pillow's ``Image.open`` and ``Image.draft``
(https://pillow.readthedocs.io/en/stable/reference/Image.html).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from protocol.errors import Rejection

MAX_PIXELS: Final = 16_000_000
MAX_DECODE_BYTES: Final = 96 * 1024 * 1024
"""Per decode: a 16-Mpx PNG is 64 MB in Pillow (4 bytes a pixel); a progressive 4:4:4 JPEG
of 16 Mpx needs 96 MB of coefficients."""
DECODERS: Final = 2
UPLOADS: Final = 16
"""Uploads with a photo handled at once (each holds a worker thread while it waits to decode);
the next one is refused until one ends."""
FORMATS: Final = ("JPEG", "PNG", "WEBP")
DECODE_WAIT_S: Final = 120.0

Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
"""Pillow's storage per pixel; every other mode (RGB, RGBA, CMYK, YCbCr, LA, I, F, …) takes 4."""
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_UNREADABLE = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,  # Pillow's plugins say "broken PNG file" this way
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    EOFError,
)


class PhotoProblem(StrEnum):
    UNREADABLE = "unreadable"
    FORMAT = "format"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_MUCH_MEMORY = "too_much_memory"
    BUSY = "busy"


class PhotoError(Rejection[PhotoProblem], ValueError):
    """A photo the console will not decode, and why (the detail names sizes, never the server's paths)."""


@dataclass(frozen=True, slots=True)
class PhotoInfo:
    format: str
    width: int
    height: int


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(PhotoProblem.TOO_MANY_PIXELS, str(exc)) from None
    except UnidentifiedImageError:
        raise PhotoError(PhotoProblem.FORMAT, "not a JPEG, PNG or WebP image") from None
    except _UNREADABLE as exc:
        raise PhotoError(PhotoProblem.UNREADABLE, f"not a readable image: {exc}") from None


def _check_pixels(image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise PhotoError(
            PhotoProblem.TOO_MANY_PIXELS, f"{width}x{height} is over {MAX_PIXELS:,} pixels".replace(",", " ")
        )


def decode_bytes(image: Image.Image, header_pixels: int) -> int:
    """What decoding ``image`` (as drafted) will take, by its header: the pixels, and a progressive JPEG's buffers."""
    width, height = image.size
    need = width * height * _BYTES_PER_PIXEL.get(image.mode, 4)
    if image.mode.startswith("I;16"):
        need += width * height * 4  # widened to 32 bits before it is reduced
    if image.format == "JPEG" and image.info.get("progressive"):
        need += header_pixels * 2 * len(image.getbands())  # 16-bit coefficients per component, full size
    return need


def _prepare(image: Image.Image, side: int) -> None:
    """Every check before a pixel is decoded; a JPEG is set to decode reduced to about ``side``."""
    _check_pixels(image)
    header_pixels = image.size[0] * image.size[1]
    if image.format == "JPEG":
        image.draft("RGB", (side, side))  # decoded at 1/2, 1/4 or 1/8: still at least side × side
    need = decode_bytes(image, header_pixels)
    if need > MAX_DECODE_BYTES:
        raise PhotoError(
            PhotoProblem.TOO_MUCH_MEMORY, f"decoding would take {need} bytes, over {MAX_DECODE_BYTES}"
        )


def inspect(data: bytes, size: tuple[int, int] = (150, 190)) -> PhotoInfo:
    """Format and size from the header, refusing what :func:`fitted` would refuse; decodes nothing."""
    with _open(data) as image:
        info = PhotoInfo(str(image.format), image.size[0], image.size[1])
        _prepare(image, 2 * max(size))
        return info


_decoding = threading.BoundedSemaphore(DECODERS)


def fitted(data: bytes, size: tuple[int, int]) -> Image.Image:
    """The photo, orientation applied, cropped to ``size``'s proportions and scaled to it, as RGB.

    Checks come first (pixels, memory); then the decode waits for one of the
    :data:`DECODERS` turns.  Every refusal is a :class:`PhotoError`.
    """
    side = 2 * max(size)
    with _open(data) as image:
        orientation = _orientation(image)
        _prepare(image, side)
        if not _decoding.acquire(timeout=DECODE_WAIT_S):
            raise PhotoError(PhotoProblem.BUSY, "the console is decoding other photos; try again")
        try:
            image.load()
            small = _reduce(image, side)
        except _UNREADABLE as exc:
            raise PhotoError(PhotoProblem.UNREADABLE, f"not a readable image: {exc}") from None
        finally:
            _decoding.release()
    if orientation in _ORIENTATION:
        small = small.transpose(_ORIENTATION[orientation])
    return ImageOps.fit(small.convert("RGB"), size, Image.Resampling.LANCZOS)


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation, read from the header (a PNG's eXIf chunk only if it came before the pixels)."""
    if image.format == "PNG" and "exif" not in image.info:
        return None  # Pillow would decode the whole PNG looking for a late eXIf chunk
    try:
        return image.getexif().get(0x0112)
    except _UNREADABLE:
        return None


def _reduce(image: Image.Image, side: int) -> Image.Image:
    """A copy at most a whole factor larger than ``side`` on its short side: the rest is done small."""
    factor = max(1, min(image.size) // side)
    if image.mode in ("P", "1"):  # reduce() takes no palette: a nearest-neighbour step is cheap and enough
        width, height = image.size
        return image.resize((max(1, width // factor), max(1, height // factor)), Image.Resampling.NEAREST)
    if image.mode.startswith("I;16"):
        image = image.convert("I")  # counted in decode_bytes
    return image.reduce(factor) if factor > 1 else image.copy()


_uploads = threading.Lock()
_uploading = 0


@contextmanager
def upload_slot() -> Iterator[None]:
    """One of the :data:`UPLOADS` places for handling an uploaded photo; :class:`PhotoError` (busy) if none."""
    global _uploading
    with _uploads:
        if _uploading >= UPLOADS:
            raise PhotoError(PhotoProblem.BUSY, "the console is handling other photos; try again in a moment")
        _uploading += 1
    try:
        yield
    finally:
        with _uploads:
            _uploading -= 1
