"""The two QR libraries behind drivers.qr.backends, on real symbols rendered by segno."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.qr import DecoderConfigError, make_backend
from simulator.camera import pass_matrix

BACKENDS = ("zxing", "pyzbar")


def symbol_image(payload: bytes, *, module_px: int = 5, dark_mode: bool = False) -> np.ndarray:
    """A clean greyscale picture of a pass: what a perfect camera would see."""
    matrix = pass_matrix(payload)
    image = np.where(np.kron(matrix, np.ones((module_px, module_px), np.uint8)) == 1, 20, 240).astype(
        np.uint8
    )
    if dark_mode:
        image = 255 - image
    return np.pad(image, 30, constant_values=255 - 20 if dark_mode else 240)


def backend_or_skip(name: str):
    """Both backends must load: ./bootstrap installs libzbar0, so a missing one is a failure, not a skip."""
    return make_backend(name)


@pytest.mark.parametrize("name", BACKENDS)
def test_reads_a_numeric_pass_exactly(name: str) -> None:
    payload = b"004217900312377109"
    reading = backend_or_skip(name).read(symbol_image(payload))
    assert [code.raw for code in reading.codes] == [payload]
    (x0, y0), _, (x1, y1), _ = reading.codes[0].quad
    assert x1 - x0 > 50 and y1 - y0 > 50  # the symbol's outline, in image pixels


def test_zxing_reports_the_aim_symbology() -> None:
    reading = make_backend("zxing").read(symbol_image(b"12345"))
    assert reading.codes[0].symbology == "]Q1"


@pytest.mark.parametrize("name", BACKENDS)
def test_binary_payload_comes_back_byte_for_byte(name: str) -> None:
    payload = bytes(range(256))[::-1][:120] + b"\x00\x01\xff"
    reading = backend_or_skip(name).read(symbol_image(payload, module_px=4))
    assert [code.raw for code in reading.codes] == [payload]


def test_plain_pyzbar_decode_mangles_binary_which_is_why_the_backend_sets_zbar_binary() -> None:
    pyzbar = pytest.importorskip("pyzbar.pyzbar")
    payload = bytes([0xC4, 0xE9, 0x80, 0xFF]) * 8
    decoded = pyzbar.decode(symbol_image(payload))
    assert decoded and decoded[0].data != payload  # zbar guessed an encoding and re-encoded it
    assert make_backend("pyzbar").read(symbol_image(payload)).codes[0].raw == payload


@pytest.mark.parametrize("name", BACKENDS)
def test_light_on_dark_is_read_only_with_invert(name: str) -> None:
    backend = backend_or_skip(name)
    image = symbol_image(b"555000111222", dark_mode=True)
    assert backend.read(image, invert=False).codes == ()
    assert [c.raw for c in backend.read(image, invert=True).codes] == [b"555000111222"]


@pytest.mark.parametrize("name", BACKENDS)
def test_two_symbols_in_one_image_are_two_codes(name: str) -> None:
    left, right = symbol_image(b"111111111111"), symbol_image(b"222222222222")
    reading = backend_or_skip(name).read(np.hstack([left, right]))
    assert sorted(code.raw for code in reading.codes) == [b"111111111111", b"222222222222"]


@pytest.mark.parametrize("name", BACKENDS)
def test_nothing_in_an_empty_or_noisy_image(name: str) -> None:
    backend = backend_or_skip(name)
    rng = np.random.default_rng(5)
    for image in (np.full((240, 320), 128, np.uint8), rng.integers(0, 256, (240, 320), dtype=np.uint8)):
        reading = backend.read(image)
        assert reading.codes == ()


def test_zxing_locates_a_symbol_it_cannot_decode() -> None:
    image = symbol_image(b"98765432109876543210" * 3, module_px=6)
    h, w = image.shape
    side = h // 4
    image[h // 2 - side // 2 : h // 2 + side // 2, w // 2 - side // 2 : w // 2 + side // 2] = (
        240  # data wiped
    )
    reading = make_backend("zxing").read(image)
    assert reading.codes == ()
    assert reading.suspects  # found, not decoded: the smart decoder's cue to try harder there
    for quad in reading.suspects:
        assert all(0 <= x <= w and 0 <= y <= h for x, y in quad)


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(DecoderConfigError, match="unknown QR backend") as info:
        make_backend("opencv")
    assert isinstance(info.value, ValueError)
