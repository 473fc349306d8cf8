"""Small holder photos for the guard screen, named by the digest the pass or card carries.

A gate shows the holder's face next to a granted photo pass or card, so that a guard can
compare it with the person in front of them.  Gates receive thumbnails, not the office's
originals: a 120×160 JPEG is a few kilobytes, so a site of thousands of residents stays a
few tens of megabytes of retained messages, and no full-resolution photo leaves the office.
The file is named by the *original's* digest (``protocol.passes.format.photo_digest``),
which is what the pass or card entry carries and so what the gate looks it up by.

Decoding is :func:`console.photos.fitted`'s: pixels and memory checked from the
header before anything is decoded, JPEGs decoded reduced, a few photos at a time
(console/photos.py).  Whatever it refuses is "not a readable image" here, with its reason.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Final

from console.photos import PhotoError, fitted
from protocol.passes.format import photo_digest

THUMBNAIL_SIZE: Final = (120, 160)
JPEG_QUALITY: Final = 70


class ThumbnailError(ValueError):
    """The upload is not an image the console will decode (unreadable, too large, or the decoders busy)."""

    def __init__(self, detail: str, reason: str = "unreadable") -> None:
        super().__init__(detail)
        self.reason = reason


def make_thumbnail(image: bytes) -> bytes:
    """A JPEG of the photo cropped to 3:4 and scaled to 120×160, orientation applied."""
    try:
        picture = fitted(image, THUMBNAIL_SIZE)
    except PhotoError as exc:
        raise ThumbnailError(f"not a readable image: {exc.detail}", exc.reason.value) from None
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def save_thumbnail(folder: Path, image: bytes) -> str:
    """Write the thumbnail of ``image`` into ``folder`` and return the digest it is filed under."""
    digest = photo_digest(image).hex()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{digest}.jpg"
    thumbnail = make_thumbnail(image)
    # a name of its own: two uploads of the same photo at once must not share a temporary file
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{digest}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(thumbnail)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return digest
