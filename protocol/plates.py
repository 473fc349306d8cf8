"""Chinese licence plates: the format a vehicle lane accepts, and the credential it becomes.

A plate reaches a gate from two places — the gate's own recogniser and an LPR camera's
HTTP push — and the console's vehicle lists come from operators and CSV files.  All of
them meet here, so that "京A12345" typed by an operator, read by OCR and pushed by a
camera are the same vehicle, and so that a reading that is not a plate at all is a typed
rejection before any decision is asked of it.

The formats are those of the public security standard GA 36-2018 (motor vehicle plates)
as summarised in https://en.wikipedia.org/wiki/Vehicle_registration_plates_of_China:

- ordinary plates (blue small, yellow large): a province character, the issuing
  authority's letter, five serial characters (digits and letters without I and O);
- plates with a last-character suffix (学 learner, 警 police, 挂 trailer, 港/澳 Hong Kong
  and Macau, 领/使 consular and embassy): four serial characters, then the suffix;
- new-energy plates (green), one character longer: small vehicles carry D, F or another
  energy-type letter third, then a letter or digit and four digits; large vehicles carry
  five digits then D or F.

A plate's credential (``plate:<ISO province code>-<serial>``) fits the card lists' ASCII
credential pattern (:data:`protocol.credentials.CREDENTIAL_PATTERN`), so resident
vehicles travel in the same snapshot-and-delta machinery as cards.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import Rejection

PROVINCES: dict[str, str] = {
    "京": "BJ", "津": "TJ", "冀": "HE", "晋": "SX", "蒙": "NM", "辽": "LN", "吉": "JL", "黑": "HL",
    "沪": "SH", "苏": "JS", "浙": "ZJ", "皖": "AH", "闽": "FJ", "赣": "JX", "鲁": "SD", "豫": "HA",
    "鄂": "HB", "湘": "HN", "粤": "GD", "桂": "GX", "琼": "HI", "渝": "CQ", "川": "SC", "贵": "GZ",
    "云": "YN", "藏": "XZ", "陕": "SN", "甘": "GS", "青": "QH", "宁": "NX", "新": "XJ",
}  # fmt: skip
"""Province character to its ISO 3166-2:CN subdivision code (the credential's ASCII form)."""

_PROVINCE_OF_CODE = {code: char for char, code in PROVINCES.items()}

SUFFIXES: dict[str, str] = {
    "学": "XUE",
    "警": "JING",
    "挂": "GUA",
    "港": "GANG",
    "澳": "AO",
    "领": "LING",
    "使": "SHI",
}
"""Last-character suffixes, and the ASCII word each becomes in a credential."""

_SUFFIX_OF_CODE = {code: char for char, code in SUFFIXES.items()}

CREDENTIAL_KIND = "plate"
_SERIAL = "A-HJ-NP-Z0-9"  # letters without I and O, and digits
_ORDINARY = re.compile(rf"^[A-Z][{_SERIAL}]{{5}}$")
_WITH_SUFFIX = re.compile(rf"^[A-Z][{_SERIAL}]{{4}}$")
_NEW_ENERGY_SMALL = re.compile(rf"^[A-Z][A-HJK][{_SERIAL}][0-9]{{4}}$")
_NEW_ENERGY_LARGE = re.compile(r"^[A-Z][0-9]{5}[DF]$")
_CREDENTIAL = re.compile(r"^plate:([A-Z]{2})-([A-Z0-9]{5,7})(?:-([A-Z]{2,4}))?$")


class PlateKind(StrEnum):
    """Which family a plate belongs to: it decides its colours in the simulator and on the page."""

    ORDINARY = "ordinary"
    SUFFIXED = "suffixed"
    NEW_ENERGY = "new_energy"


class PlateRejectReason(StrEnum):
    """Why a text is not a plate.  Stable strings: they appear in events and logs."""

    EMPTY = "empty"
    UNKNOWN_PROVINCE = "unknown_province"
    BAD_FORMAT = "bad_format"
    BAD_CREDENTIAL = "bad_credential"


class PlateError(Rejection[PlateRejectReason], ValueError):
    """A text or credential that is not a plate this module accepts."""


@dataclass(frozen=True, slots=True)
class Plate:
    """One plate, normalised: ``province`` is the character, ``serial`` the rest without suffix."""

    province: str
    serial: str
    suffix: str = ""
    kind: PlateKind = PlateKind.ORDINARY

    @property
    def text(self) -> str:
        """The plate as printed on it, e.g. ``京A12345`` or ``粤B1234港``."""
        return f"{self.province}{self.serial}{self.suffix}"

    @property
    def credential(self) -> str:
        """The ASCII credential the card-list machinery carries, e.g. ``plate:BJ-A12345``."""
        tail = f"-{SUFFIXES[self.suffix]}" if self.suffix else ""
        return f"{CREDENTIAL_KIND}:{PROVINCES[self.province]}-{self.serial}{tail}"

    def __str__(self) -> str:
        return self.text


def _clean(text: str) -> str:
    """Full-width letters and digits to ASCII, upper case, and no spaces, dots or dashes.

    OCR and people both write ``京A·12345``, ``京 a12345`` or full-width ``京Ａ１２３４５``.
    """
    folded = unicodedata.normalize("NFKC", text)
    return re.sub(r"[\s·.\-_•]", "", folded).upper()


def parse_plate(text: str) -> Plate:
    """Normalise ``text`` into a :class:`Plate`, or raise :class:`PlateError` saying why."""
    cleaned = _clean(text)
    if not cleaned:
        raise PlateError(PlateRejectReason.EMPTY, "no characters")
    province, rest = cleaned[0], cleaned[1:]
    if province not in PROVINCES:
        raise PlateError(PlateRejectReason.UNKNOWN_PROVINCE, f"{province!r} is not a province character")
    if rest and rest[-1] in SUFFIXES:
        if _WITH_SUFFIX.match(rest[:-1]):
            return Plate(province, rest[:-1], rest[-1], PlateKind.SUFFIXED)
    elif _ORDINARY.match(rest):
        return Plate(province, rest, "", PlateKind.ORDINARY)
    elif _NEW_ENERGY_SMALL.match(rest) or _NEW_ENERGY_LARGE.match(rest):
        return Plate(province, rest, "", PlateKind.NEW_ENERGY)
    raise PlateError(PlateRejectReason.BAD_FORMAT, f"{text!r} is not a plate format (GA 36-2018)")


def plate_from_credential(credential: str) -> Plate:
    """The plate a ``plate:`` credential names; :class:`PlateError` if it names none."""
    match = _CREDENTIAL.match(credential)
    if match is None or match.group(1) not in _PROVINCE_OF_CODE:
        raise PlateError(PlateRejectReason.BAD_CREDENTIAL, f"{credential!r} is not a plate credential")
    suffix_code = match.group(3)
    if suffix_code is not None and suffix_code not in _SUFFIX_OF_CODE:
        raise PlateError(PlateRejectReason.BAD_CREDENTIAL, f"unknown suffix {suffix_code!r}")
    suffix = _SUFFIX_OF_CODE[suffix_code] if suffix_code else ""
    return parse_plate(_PROVINCE_OF_CODE[match.group(1)] + match.group(2) + suffix)


def differences(a: Plate, b: Plate) -> int:
    """How many characters two plates differ by; plates of different lengths differ by their length.

    A near miss (one character off) is what OCR makes of a registered car in glare, and
    what a cloned plate made by hand looks like: neither opens the arm on its own, both
    go to the guard (issue: vehicle lanes).
    """
    ta, tb = a.text, b.text
    if len(ta) != len(tb):
        return max(len(ta), len(tb))
    return sum(1 for x, y in zip(ta, tb, strict=True) if x != y)
