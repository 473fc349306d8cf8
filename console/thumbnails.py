"""Small holder photos for the guard screen, named by the digest the pass or card carries.

A gate shows the holder's face next to a granted photo pass or card, so that a guard can
compare it with the person in front of them.  Gates receive thumbnails, not the office's
originals: a 120×160 JPEG is a few kilobytes, so a site of thousands of residents stays a
few tens of megabytes of retained messages, and no full-resolution photo leaves the office.
The file is named by the *original's* digest (``protocol.passes.format.photo_digest``),
which is what the pass or card entry carries and so what the gate looks it up by.

An upload is decoded only if its header claims at most :data:`MAX_PIXELS`: a PNG of
a few tens of kilobytes can claim 20000×20000 pixels and take gigabytes to decode.
The check is ours, made before any pixel is read, rather than Pillow's process-wide
``MAX_IMAGE_PIXELS``; whatever Pillow refuses on its own (its decompression-bomb error,
or its warning where warnings are errors) is "not a readable image" like any other.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from protocol.passes.format import photo_digest

THUMBNAIL_SIZE: Final = (120, 160)
JPEG_QUALITY: Final = 70
MAX_PIXELS: Final = 40_000_000
"""Three times a phone's usual 12-Mpx photo; the bound a printed pass's photo has too."""
_UNREADABLE = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,  # Pillow's plugins say "broken PNG file" this way
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class ThumbnailError(ValueError):
    """The upload is not an image Pillow can read."""


def make_thumbnail(image: bytes) -> bytes:
    """A JPEG of the photo cropped to 3:4 and scaled to 120×160, orientation applied."""
    try:
        with Image.open(io.BytesIO(image)) as original:
            width, height = original.size
            if width * height > MAX_PIXELS:
                raise ThumbnailError(f"not a readable image: {width}x{height} is over {MAX_PIXELS} pixels")
            picture = ImageOps.exif_transpose(original).convert("RGB")
    except ThumbnailError:
        raise
    except _UNREADABLE as exc:
        raise ThumbnailError(f"not a readable image: {exc}") from None
    picture = ImageOps.fit(picture, THUMBNAIL_SIZE)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def save_thumbnail(folder: Path, image: bytes) -> str:
    """Write the thumbnail of ``image`` into ``folder`` and return the digest it is filed under."""
    digest = photo_digest(image).hex()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{digest}.jpg"
    temporary = target.with_suffix(".part")
    temporary.write_bytes(make_thumbnail(image))
    os.replace(temporary, target)
    return digest
