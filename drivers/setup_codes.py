"""What scanner configuration ("setup") codes look like, so a pass can never be one.

Most scanners change their settings when they read a programming barcode, and many also
take the same commands over the serial line.  A scanner normally swallows its own setup
codes, but it transmits those meant for another vendor, and a misconfigured one may pass
its own through.  Either way such a line is not a pass: it is refused with the reason
``setup_code`` so the console sees that someone presented one, and a pass issuer can
check its own codes against :func:`setup_code_kind` before printing them.

The rules are deliberately narrow -- a false match refuses a genuine resident -- and
each one names where its shape comes from:

``honeywell_menu``
    Honeywell menu commands: prefix ``SYN M CR`` (0x16 0x4D 0x0D), then a 3-character
    tag, 3-character subtag, data and a storage character ``.`` or ``!``; e.g.
    ``232BAD9.`` sets 115200 baud, ``DEFALT.`` restores defaults (Honeywell 1450g,
    Xenon, N3680 user guides, "Serial Programming Commands").  The CR in the prefix ends
    a line, so the prefix and the body arrive as two lines; both are recognised.
``metroselect``
    Honeywell/Metrologic MetroSelect serial program mode ``STX 999999 ETX`` (MS9520
    user manual, "Serial Program Mode").
``newland_nls``
    Newland ``NLS`` + seven digits, e.g. ``NLS0006010`` (enable command programming),
    ``NLS0313000=3000`` (used verbatim by integrations of Newland EM20xx/EM3096 engines).
``newland_command``
    Newland serial command prefix ``~ SOH 0000`` followed by ``@`` or ``#`` (NLS-HR52,
    NLS-HR20-BT manuals, "Use of Programming Command") and the older ``$$%^`` / ``$$%~``
    command/answer framing (NLS-BS80 manual, "Programming with Serial Commands").
``newland_setup``
    Newland setup-barcode payloads: ``@`` + tag + subtag + data, e.g. ``@UPAAD50``
    (NLS-HR42 manual, symbology chapters).
``datalogic_fnc3``
    A Code 128 label starting with FNC3 is a programming label; with "transmit function
    characters" on, FNC3 reaches the host as byte 0x82 (Datalogic Magellan 800i manual).
``datalogic_host``
    Datalogic host configuration strings, framed by ``$+`` (enter) ... ``$-`` (exit and
    save) (PowerScan/Gryphon manuals, "Host Configuration Strings").

Not matched on purpose: MetroSelect's all-digit programming labels (``999999``...) and
Zebra parameter barcodes (Code 128 with FNC3, never transmitted as text), because
matching digits alone would refuse numeric passes.
"""

from __future__ import annotations

import re

_BYTE_RULES: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("honeywell_menu", re.compile(rb"\A\x16M(?:\r|\Z)")),
    ("metroselect", re.compile(rb"\A\x02\d{6}\x03")),
    ("newland_command", re.compile(rb"\A~\x010000[@#]")),
    ("datalogic_fnc3", re.compile(rb"\A\x82")),
)

_TEXT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("newland_nls", re.compile(r"\A(?i:NLS)\d{7}")),
    ("newland_command", re.compile(r"\A\$\$%[\^~]")),
    ("newland_setup", re.compile(r"\A@[0-9A-Z]{6}[0-9A-Za-z,;=]*\Z")),
    ("datalogic_host", re.compile(r"\A\$\+")),
    (
        "honeywell_menu",
        re.compile(r"\A[0-9A-Z]{3}[A-Z]{3}[0-9A-Za-z*?^&]*(?:[,;][0-9A-Z]{3,6}[0-9A-Za-z*?^&]*)*[.!]\Z"),
    ),
)


def setup_code_kind_of_bytes(line: bytes) -> str | None:
    """The rule a raw line (terminator removed) matches before decoding, or None.

    These shapes contain control or non-ASCII bytes, so they are checked first: they
    would otherwise be reported as merely ``unprintable``.
    """
    for name, pattern in _BYTE_RULES:
        if pattern.search(line):
            return name
    return None


def setup_code_kind(code: str) -> str | None:
    """The rule a decoded code (symbology prefix removed) matches, or None."""
    for name, pattern in _TEXT_RULES:
        if pattern.search(code):
            return name
    return None
