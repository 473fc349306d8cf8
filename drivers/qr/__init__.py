"""Reading QR passes from camera frames.

``make_decoder()`` builds what a camera gate uses: by default a :class:`SmartDecoder`
over zxing-cpp (see :mod:`drivers.qr.smart` for what it does per frame and
:mod:`drivers.qr.backends` for why zxing-cpp).  Decoders take greyscale uint8 frames and
return :class:`FrameResult`; every :class:`Decoded` carries the payload's exact bytes.
"""

from __future__ import annotations

from drivers.qr.backends import (
    BACKENDS,
    BackendUnavailable,
    Decoded,
    DecoderConfigError,
    PyzbarBackend,
    QrBackend,
    Reading,
    ZxingBackend,
    make_backend,
)
from drivers.qr.smart import ChangeDetector, FrameDecoder, FrameResult, NaiveDecoder, SmartDecoder

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "ChangeDetector",
    "Decoded",
    "DecoderConfigError",
    "FrameDecoder",
    "FrameResult",
    "NaiveDecoder",
    "PyzbarBackend",
    "QrBackend",
    "Reading",
    "SmartDecoder",
    "ZxingBackend",
    "make_backend",
    "make_decoder",
]


def make_decoder(backend: str = "zxing", *, smart: bool = True, **options: float) -> FrameDecoder:
    """The decoder a camera configuration asks for; ``options`` go to :class:`SmartDecoder`."""
    if not smart:
        if options:
            raise DecoderConfigError(f"options {sorted(options)} apply only to the smart decoder")
        return NaiveDecoder(backend)
    return SmartDecoder(backend, **options)  # type: ignore[arg-type]
