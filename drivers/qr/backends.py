"""QR decoding libraries behind one small interface: zxing-cpp (the default) and pyzbar.

Both are measured on the same labelled frames by ``bench/camera.py``; on this machine
zxing-cpp reads a 1280x720 frame about ten times faster than zbar, also reads codes that
are tilted in perspective, and returns a payload's exact bytes.  That is why it is the
default.  pyzbar stays available as a second opinion and for sites that already trust it.

Binary payloads: zbar converts byte-mode data to text by guessing its encoding (Latin-1
bytes come back re-encoded as UTF-8, pyzbar issues #14 and #105), which turns a pass into
a *different* payload.  zbar 0.23.1 and later can be told not to (``ZBAR_CFG_BINARY``);
pyzbar 0.1.9 does not expose that option (pyzbar PR #82 is still open), so
:class:`PyzbarBackend` drives zbar through pyzbar's own ctypes wrapper and sets it.  On an
older libzbar the option is refused and the backend drops every payload that is not
plain ASCII rather than pass on a guess.  zxing-cpp's ``Barcode.bytes`` is exact.

Each backend is imported only when it is chosen, so a gate without ``libzbar0`` runs as
long as it does not ask for pyzbar.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from protocol.errors import GatepostError

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "Decoded",
    "DecoderConfigError",
    "PyzbarBackend",
    "QrBackend",
    "Reading",
    "ZxingBackend",
    "make_backend",
]

log = logging.getLogger("gatepost.drivers.qr")

Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]
"""Four corners (x, y) of a symbol in frame pixels."""


class BackendUnavailable(GatepostError, ImportError):
    """The chosen decoding library (or the system library it needs) is not installed."""


class DecoderConfigError(GatepostError, ValueError):
    """A decoder asked for with options that cannot work (unknown backend, negative budget...)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """One symbol read from a frame: exactly its bytes, where it was, and which attempt read it."""

    raw: bytes
    symbology: str | None
    """AIM identifier as the library reports it (``]Q1``), or None if it does not."""
    quad: Quad
    attempt: str = "full"
    """Which try read it (``full``, ``unsharp``, ``upscale``...), for tuning and the benchmark."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What one pass of a backend over one image found."""

    codes: tuple[Decoded, ...] = ()
    suspects: tuple[Quad, ...] = ()
    """Symbols located but not decoded (zxing-cpp's ``return_errors``): a code is very likely there."""


class QrBackend(Protocol):
    name: str
    finds_suspects: bool
    """Whether :attr:`Reading.suspects` can be non-empty, i.e. the library reports failed decodes."""

    def read(self, grey: np.ndarray, *, invert: bool = True) -> Reading:
        """Read every QR code in a greyscale uint8 image; also light-on-dark ones if ``invert``."""
        ...


def _quad(points: Any) -> Quad:
    corners = [(float(x), float(y)) for x, y in points]
    return (corners[0], corners[1], corners[2], corners[3])


class ZxingBackend:
    """zxing-cpp, QR only, no 90-degree rotation search (a QR symbol is read in any orientation anyway)."""

    name = "zxing"
    finds_suspects = True

    def __init__(self) -> None:
        try:
            import zxingcpp
        except ImportError as exc:  # pragma: no cover - exercised only where it is missing
            raise BackendUnavailable(f"zxing-cpp is not installed ({exc}); pip install zxing-cpp") from exc
        self._zx = zxingcpp
        self._formats = zxingcpp.BarcodeFormat.QRCode

    def read(self, grey: np.ndarray, *, invert: bool = True) -> Reading:
        results = self._zx.read_barcodes(
            grey, formats=self._formats, try_rotate=False, try_invert=invert, return_errors=True
        )
        codes: list[Decoded] = []
        suspects: list[Quad] = []
        for result in results:
            p = result.position
            quad = _quad((q.x, q.y) for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
            if result.valid and not result.error:
                codes.append(Decoded(bytes(result.bytes), result.symbology_identifier or None, quad))
            else:
                suspects.append(quad)
        return Reading(tuple(codes), tuple(suspects))


_ZBAR_CFG_BINARY = 4
"""``ZBAR_CFG_BINARY`` in zbar.h (0.23.1+): keep byte-mode data as bytes instead of guessing an encoding."""
_ZBAR_CFG_TEST_INVERTED = 0x81
"""``ZBAR_CFG_TEST_INVERTED`` (0.23.1+): if nothing decodes, try the inverted image too."""


class PyzbarBackend:
    """zbar through pyzbar's ctypes wrapper, configured for exact bytes and QR only.

    ``pyzbar.decode`` creates a scanner per call and cannot set ``ZBAR_CFG_BINARY``; this
    keeps one configured scanner per backend (use one backend per thread: a zbar scanner
    is not thread-safe).
    """

    name = "pyzbar"
    finds_suspects = False

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar, wrapper
        except ImportError as exc:
            raise BackendUnavailable(
                f"pyzbar cannot load libzbar ({exc}); apt-get install libzbar0 and pip install pyzbar"
            ) from exc
        self._w = wrapper
        self._fourcc = pyzbar._FOURCC["L800"]  # the grey format code pyzbar itself uses
        qr = int(pyzbar.ZBarSymbol.QRCODE)
        self._qr = qr
        scanner = wrapper.zbar_image_scanner_create()
        set_config = wrapper.zbar_image_scanner_set_config
        set_config(scanner, 0, wrapper.ZBarConfig.CFG_ENABLE, 0)
        set_config(scanner, qr, wrapper.ZBarConfig.CFG_ENABLE, 1)
        self.binary_safe = set_config(scanner, qr, _ZBAR_CFG_BINARY, 1) == 0
        if not self.binary_safe:
            log.warning("libzbar is older than 0.23.1: payloads that are not plain ASCII will be dropped")
        self._scanner = scanner
        self._inverted_scanner: Any = None
        self._set_config = set_config

    def _scanner_for(self, invert: bool) -> Any:
        if not invert:
            return self._scanner
        if self._inverted_scanner is None:
            scanner = self._w.zbar_image_scanner_create()
            self._set_config(scanner, 0, self._w.ZBarConfig.CFG_ENABLE, 0)
            self._set_config(scanner, self._qr, self._w.ZBarConfig.CFG_ENABLE, 1)
            self._set_config(scanner, self._qr, _ZBAR_CFG_BINARY, 1)
            self._set_config(scanner, 0, _ZBAR_CFG_TEST_INVERTED, 1)
            self._inverted_scanner = scanner
        return self._inverted_scanner

    def read(self, grey: np.ndarray, *, invert: bool = True) -> Reading:
        from ctypes import c_void_p, cast, string_at

        w = self._w
        pixels = np.ascontiguousarray(grey, dtype=np.uint8).tobytes()
        height, width = grey.shape[:2]
        image = w.zbar_image_create()
        codes: list[Decoded] = []
        try:
            w.zbar_image_set_format(image, self._fourcc)
            w.zbar_image_set_size(image, width, height)
            w.zbar_image_set_data(image, cast(pixels, c_void_p), len(pixels), None)
            if w.zbar_scan_image(self._scanner_for(invert), image) < 0:
                return Reading()
            symbol = w.zbar_image_first_symbol(image)
            while symbol:
                data = string_at(w.zbar_symbol_get_data(symbol), w.zbar_symbol_get_data_length(symbol))
                points = [
                    (w.zbar_symbol_get_loc_x(symbol, i), w.zbar_symbol_get_loc_y(symbol, i))
                    for i in range(w.zbar_symbol_get_loc_size(symbol))
                ]
                symbol = w.zbar_symbol_next(symbol)
                if not self.binary_safe and not data.isascii():
                    continue  # zbar re-encoded it: the bytes are a guess, not the pass
                codes.append(Decoded(data, None, _bounding_quad(points)))
        finally:
            w.zbar_image_destroy(image)
        return Reading(tuple(codes))

    def close(self) -> None:
        for scanner in (self._scanner, self._inverted_scanner):
            if scanner is not None:
                self._w.zbar_image_scanner_destroy(scanner)
        self._scanner = self._inverted_scanner = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: the library may be gone already
            self.close()


def _bounding_quad(points: list[tuple[int, int]]) -> Quad:
    if not points:
        return ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0))
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


BACKENDS = ("zxing", "pyzbar")


def make_backend(name: str) -> QrBackend:
    """A backend by configuration name; :class:`BackendUnavailable` if its library is missing."""
    if name == "zxing":
        return ZxingBackend()
    if name == "pyzbar":
        return PyzbarBackend()
    raise DecoderConfigError(f"unknown QR backend {name!r}; choose one of {', '.join(BACKENDS)}")
