"""Words for the codes gates send: event types, reasons (and door causes), decision flags.

Gates and the store speak in stable codes (``access.scan``, ``revoked``,
``clock_untrusted``); a guard or a newcomer reads words.  Each code has a label in
``locales/codes.{en,zh}.json`` under ``event_type.``, ``reason.`` or ``flag.``;
``tests/console/web/test_i18n.py`` enumerates the protocol's and the gate's enums so that
a code added without a label fails there.  A code the catalogue does not know (a newer
gate's) is shown as itself, never as a broken key, and pages keep the code in a tooltip
so that it can still be typed into a filter or searched for in the docs.
"""

from __future__ import annotations

from typing import Any

from console.web.i18n import Translate, catalogues

PREFIXES = ("event_type", "reason", "flag")


def code_label(t: Translate, prefix: str, code: object) -> str:
    """The label of ``code`` in ``t``'s language, or the code itself when it has none."""
    if code is None or code == "":
        return ""
    key = f"{prefix}.{code}"
    return t(key) if key in catalogues()["en"] else str(code)


def code_labels(t: Translate) -> dict[str, str]:
    """Every code label in ``t``'s language, for the pages' scripts that add live rows."""
    return {key: t(key) for key in catalogues()["en"] if key.split(".", 1)[0] in PREFIXES}


def label_helpers(t: Translate) -> dict[str, Any]:
    """The template globals: ``label(prefix, code)`` and ``code_labels()``."""
    return {"label": lambda prefix, code: code_label(t, prefix, code), "code_labels": lambda: code_labels(t)}
