"""Printed cards: the QR on the PNG reads back to exactly the issued code, and the gate grants it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import zxingcpp
from PIL import Image

from console.passes import printing
from console.passes.office import Office, PassRequest, gate_state_from, parse_window
from console.passes.printing import CARD_PX, PrintError, PrintReason, make_qr, print_pass
from protocol.passes import ClockReading, Role, decide
from tests.offices import create_office

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def read_qr(path: Path) -> list[str]:
    image = np.asarray(Image.open(path).convert("L"))
    return [r.text for r in zxingcpp.read_barcodes(image) if r.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Office:
    o = create_office(tmp_path_factory.mktemp("office") / "o", site="greenwood", site_id=7, now=NOW)
    yield o
    o.close()


@pytest.mark.parametrize(
    "request_",
    [
        PassRequest("王小明", "3-2-501", Role.RESIDENT, frozenset({0, 1}), days=365),
        PassRequest(
            "Alexandra Konstantinopoulou", "光明乳业", Role.SERVICE_WORKER, days=90,
            daily_window=parse_window("22:00-06:00"),
        ),
    ],
)  # fmt: skip
def test_printed_qr_decodes_to_the_issued_code_and_is_granted(
    office: Office, tmp_path: Path, request_: PassRequest
) -> None:
    photo = tmp_path / "face.jpg"
    Image.new("RGB", (300, 400), (170, 120, 90)).save(photo)
    issued = office.issue(PassRequest(**{**_fields(request_), "photo": photo}), now=NOW)
    png, pdf = print_pass(
        issued.pass_, issued.text, tmp_path, site="greenwood", zone=office.timezone, photo=photo.read_bytes()
    )
    assert png.name == f"{issued.pass_.serial}.png" and pdf.read_bytes().startswith(b"%PDF")
    with Image.open(png) as img:
        assert img.size == CARD_PX
        assert round(img.info["dpi"][0]) == 300
    assert read_qr(png) == [issued.text]
    state = gate_state_from(office.public)
    when = NOW + timedelta(minutes=1)
    if issued.pass_.daily_window is not None:
        when = when.astimezone(office.timezone).replace(hour=23) + timedelta(days=1)
    assert decide(read_qr(png)[0], ClockReading(when, True), state).granted


def _fields(r: PassRequest) -> dict[str, object]:
    return {name: getattr(r, name) for name in PassRequest.__slots__}


def test_qr_is_numeric_mode_at_level_q(office: Office) -> None:
    issued = office.issue(PassRequest("访客", "2-1-101", Role.VISITOR), now=NOW)
    qr = make_qr(issued.text)
    assert (qr.mode, qr.error) == ("numeric", "Q")


def test_missing_cjk_font_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no fc-list
    monkeypatch.setenv("GATEPOST_CJK_FONT", str(tmp_path / "none.ttf"))
    monkeypatch.setattr(printing, "KNOWN_CJK_FONTS", ())
    printing.find_cjk_font.cache_clear()
    try:
        with pytest.raises(PrintError) as err:
            printing.find_cjk_font()
        assert err.value.reason is PrintReason.NO_CJK_FONT
        assert isinstance(err.value, RuntimeError)
    finally:
        printing.find_cjk_font.cache_clear()
