"""A pass as QR numeric-mode text: only the digits 0-9.

Why digits: QR numeric mode packs 3 digits into 10 bits (3.32 bits per digit, 98% of
the information), which beats byte mode for binary data turned into text (base64 in
byte mode carries 6 bits in 8), and digits are the one alphabet that every scanner
types identically on every keyboard layout, in serial and in keyboard-wedge mode.

Text layout::

    4750  marker ("GP" in hex), so a gate can tell its passes from any other QR code
    K     one digit: 1 = format-1 pass, 2 = format-1 pass followed by a dynamic code
    D...  the pass bytes as one big number, zero-padded to the width its length needs
    C...  (K = 2 only) the 8-digit dynamic code, see :mod:`protocol.passes.dynamic`

``n`` bytes become ``len(str(256**n - 1))`` digits; that width grows by at least 2 per
byte, so the digit count alone gives back ``n`` and leading zero bytes survive.  Values
of ``256**n`` or more at that width are rejected, so each byte string has one text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nacl.signing import SigningKey

from protocol.passes.errors import PassError, PassRejectReason
from protocol.passes.format import MAX_PASS_BYTES, Pass, SignedPass, decode_pass, sign_pass

MARKER = "4750"
KIND_STATIC = "1"
KIND_DYNAMIC = "2"
DYNAMIC_CODE_DIGITS = 8

_WIDTH = {n: len(str(256**n - 1)) if n else 0 for n in range(MAX_PASS_BYTES + 1)}
_BYTES_FOR_WIDTH = {width: n for n, width in _WIDTH.items()}
MAX_TEXT_DIGITS = len(MARKER) + 1 + _WIDTH[MAX_PASS_BYTES] + DYNAMIC_CODE_DIGITS
_SURROUNDING = " \t\r\n\x00"
"""What scanners add around a code (CR/LF suffixes, keyboard-wedge tabs) and is not part of it."""


def bytes_to_digits(data: bytes) -> str:
    """``n`` bytes as exactly ``len(str(256**n - 1))`` decimal digits."""
    if not data:
        return ""
    return str(int.from_bytes(data, "big")).zfill(_WIDTH[len(data)])


def digits_to_bytes(digits: str) -> bytes:
    """The inverse of :func:`bytes_to_digits`, rejecting any digit string it cannot have made."""
    n = _BYTES_FOR_WIDTH.get(len(digits))
    if n is None:
        raise PassError(PassRejectReason.BAD_DIGITS, f"{len(digits)} digits encode no whole number of bytes")
    if not (digits.isascii() and digits.isdigit()) and digits:
        raise PassError(PassRejectReason.BAD_DIGITS, "not decimal digits")
    value = int(digits) if digits else 0
    if value >> (8 * n):
        raise PassError(PassRejectReason.BAD_DIGITS, "value too large for its width")
    return value.to_bytes(n, "big")


def encode_text(pass_bytes: bytes, dynamic_code: str | None = None) -> str:
    """The QR text for signed pass bytes, optionally with a dynamic code appended."""
    if len(pass_bytes) > MAX_PASS_BYTES:
        raise PassError(PassRejectReason.TOO_LONG, f"{len(pass_bytes)} bytes, at most {MAX_PASS_BYTES}")
    if dynamic_code is None:
        return MARKER + KIND_STATIC + bytes_to_digits(pass_bytes)
    if len(dynamic_code) != DYNAMIC_CODE_DIGITS or not (dynamic_code.isascii() and dynamic_code.isdigit()):
        raise PassError(PassRejectReason.BAD_FIELD, f"a dynamic code is {DYNAMIC_CODE_DIGITS} digits")
    return MARKER + KIND_DYNAMIC + bytes_to_digits(pass_bytes) + dynamic_code


def issue(p: Pass, key: SigningKey) -> str:
    """Sign ``p`` and return its QR text: what is printed, or the static part a phone shows."""
    return encode_text(sign_pass(p, key))


@dataclass(frozen=True, slots=True)
class ScannedCode:
    """A parsed scan: the pass (signature not yet checked) and the dynamic code, if shown."""

    signed: SignedPass
    dynamic_code: str | None


def decode_text(text: str) -> ScannedCode:
    """Parse scanner text, or raise :class:`PassError`; never anything else, whatever the text.

    ``NOT_A_PASS`` means the code is not ours at all (someone scanned a Wi-Fi QR code);
    every other reason means it carries our marker but is damaged or forged.
    """
    if not isinstance(text, str):
        raise PassError(PassRejectReason.NOT_A_PASS, "scanner text must be str")
    if len(text) > MAX_TEXT_DIGITS + 64:
        raise PassError(PassRejectReason.TOO_LONG, f"{len(text)} characters")
    text = text.strip(_SURROUNDING)
    if not text.startswith(MARKER) or not (text.isascii() and text.isdigit()):
        raise PassError(PassRejectReason.NOT_A_PASS, "no gatepost marker or not all digits")
    if len(text) > MAX_TEXT_DIGITS:
        raise PassError(PassRejectReason.TOO_LONG, f"{len(text)} digits, at most {MAX_TEXT_DIGITS}")
    kind, body = text[len(MARKER) : len(MARKER) + 1], text[len(MARKER) + 1 :]
    if not kind:
        raise PassError(PassRejectReason.TRUNCATED, "marker without a kind")
    code = None
    if kind == KIND_DYNAMIC:
        if len(body) < DYNAMIC_CODE_DIGITS:
            raise PassError(PassRejectReason.TRUNCATED, "no room for the dynamic code")
        body, code = body[:-DYNAMIC_CODE_DIGITS], body[-DYNAMIC_CODE_DIGITS:]
    elif kind != KIND_STATIC:
        raise PassError(PassRejectReason.UNSUPPORTED_VERSION, f"text kind {kind}")
    return ScannedCode(decode_pass(digits_to_bytes(body)), code)


# -- QR capacity ------------------------------------------------------------------------

ErrorLevel = Literal["L", "M", "Q", "H"]

# Data codewords per symbol for versions 1..40: ISO/IEC 18004:2015, Table 7 ("Error
# correction characteristics for QR Code"), column "Number of data codewords".
_DATA_CODEWORDS: dict[str, tuple[int, ...]] = {
    "L": (19, 34, 55, 80, 108, 136, 156, 194, 232, 274, 324, 370, 428, 461, 523, 589, 647, 721, 795, 861,
          932, 1006, 1094, 1174, 1276, 1370, 1468, 1531, 1631, 1735, 1843, 1955, 2071, 2191, 2306, 2434,
          2566, 2702, 2812, 2956),
    "M": (16, 28, 44, 64, 86, 108, 124, 154, 182, 216, 254, 290, 334, 365, 415, 453, 507, 563, 627, 669,
          714, 782, 860, 914, 1000, 1062, 1128, 1193, 1267, 1373, 1455, 1541, 1631, 1725, 1812, 1914,
          1992, 2102, 2216, 2334),
    "Q": (13, 22, 34, 48, 62, 76, 88, 110, 132, 154, 180, 206, 244, 261, 295, 325, 367, 397, 445, 485,
          512, 568, 614, 664, 718, 754, 808, 871, 911, 985, 1033, 1115, 1171, 1231, 1286, 1354, 1426,
          1502, 1582, 1666),
    "H": (9, 16, 26, 36, 46, 60, 66, 86, 100, 122, 140, 158, 180, 197, 223, 253, 283, 313, 341, 385, 406,
          442, 464, 514, 538, 596, 628, 661, 701, 745, 793, 845, 901, 961, 986, 1054, 1096, 1142, 1222,
          1276),
}  # fmt: skip


def numeric_segment_bits(digits: int, version: int) -> int:
    """Bits of one numeric-mode segment (ISO/IEC 18004:2015, 7.4.3 and Table 3)."""
    count_bits = 10 if version <= 9 else 12 if version <= 26 else 14
    remainder = (0, 4, 7)[digits % 3]
    return 4 + count_bits + 10 * (digits // 3) + remainder


def qr_version(digits: int, level: ErrorLevel = "Q") -> int:
    """The smallest QR version (1-40) holding ``digits`` digits in one numeric segment."""
    for version, codewords in enumerate(_DATA_CODEWORDS[level], start=1):
        if numeric_segment_bits(digits, version) <= 8 * codewords:
            return version
    raise ValueError(f"{digits} digits do not fit any QR version at level {level}")
