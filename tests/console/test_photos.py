"""Photo decoding within bounds (console/photos.py): refusals from the header, reduced JPEG decodes, orientation."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from console import photos
from console.photos import PhotoError, PhotoProblem


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_encode(Image.new("L", (4500, 4000)), "PNG"), PhotoProblem.TOO_MANY_PIXELS),
        (_encode(Image.new("1", (9000, 9000)), "PNG"), PhotoProblem.TOO_MANY_PIXELS),
        (_encode(Image.new("RGB", (40, 40)), "GIF"), PhotoProblem.FORMAT),
        (_encode(Image.new("RGB", (40, 40)), "TIFF"), PhotoProblem.FORMAT),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, PhotoProblem.FORMAT),
        (b"not an image", PhotoProblem.FORMAT),
    ],
    ids=["18 Mpx", "81 Mpx bomb", "GIF", "TIFF", "PNG signature only", "text"],
)
def test_refused_from_the_header_with_a_reason(data: bytes, problem: PhotoProblem) -> None:
    for check in (photos.inspect, lambda d: photos.fitted(d, (120, 160))):
        with pytest.raises(PhotoError) as refused:
            check(data)
        assert refused.value.reason is problem


def test_a_truncated_photo_is_unreadable_not_a_crash() -> None:
    whole = _encode(Image.new("RGB", (200, 300)), "PNG")
    with pytest.raises(PhotoError) as refused:
        photos.fitted(whole[: len(whole) // 2], (120, 160))
    assert refused.value.reason is PhotoProblem.UNREADABLE


def test_a_progressive_jpeg_is_judged_by_its_full_size_buffers() -> None:
    # libjpeg keeps every coefficient of a progressive image, full size, whatever the draft:
    # four components of 15.6 Mpx are 125 MB
    big = Image.new("CMYK", (4000, 3900))
    with pytest.raises(PhotoError) as refused:
        photos.fitted(_encode(big, "JPEG", progressive=True), (120, 160))
    assert refused.value.reason is PhotoProblem.TOO_MUCH_MEMORY
    assert photos.fitted(_encode(big, "JPEG"), (120, 160)).size == (120, 160)  # a baseline one is drafted


def test_a_jpeg_is_decoded_reduced(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    real = photos._reduce
    monkeypatch.setattr(photos, "_reduce", lambda image, side: seen.append(image.size) or real(image, side))
    photo = photos.fitted(_encode(Image.new("RGB", (4000, 3000), (1, 2, 3)), "JPEG"), (150, 190))
    assert photo.size == (150, 190) and photo.mode == "RGB"
    assert seen == [(1000, 750)]  # decoded at 1/4, still over twice the picture: 0.75 Mpx instead of 12


def test_the_exif_orientation_is_applied() -> None:
    landscape = Image.new("RGB", (400, 300), (255, 0, 0))
    landscape.paste((0, 0, 255), (0, 0, 200, 300))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90° clockwise to show it
    photo = photos.fitted(_encode(landscape, "JPEG", exif=exif), (120, 160))
    top, bottom = photo.getpixel((60, 5)), photo.getpixel((60, 155))
    assert top[2] > 200 and bottom[0] > 200  # the blue left half is now on top


@pytest.mark.parametrize("mode", ["P", "1", "L", "LA", "RGBA", "I;16"])
def test_every_png_mode_comes_out_rgb(mode: str) -> None:
    assert photos.fitted(_encode(Image.new(mode, (900, 1200)), "PNG"), (120, 160)).mode == "RGB"


def test_uploads_beyond_the_places_are_refused_at_once() -> None:
    held = []
    try:
        for _ in range(photos.UPLOADS):
            slot = photos.upload_slot()
            slot.__enter__()
            held.append(slot)
        with pytest.raises(PhotoError) as refused, photos.upload_slot():
            pass
        assert refused.value.reason is PhotoProblem.BUSY
    finally:
        for slot in held:
            slot.__exit__(None, None, None)
    with photos.upload_slot():  # the places are given back
        pass
