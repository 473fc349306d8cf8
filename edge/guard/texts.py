"""The screen's words in Chinese and English, from ``locales/<lang>.json``.

Both files are sent to the page whole: the page switches the interface language without
a round trip, and shows a decision's reason in both languages at once, because a guard
must not have to switch to read why someone was stopped.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from protocol.duty import DutyRefusalReason
from protocol.passes import Flag, Reason, Role

LANGUAGES = ("zh", "en")
"""Chinese first: the default at a Beijing gate."""
LOCALE_DIR = Path(__file__).resolve().parent / "locales"

MANUAL_REASONS = ("forgot_pass", "phone_dead", "delivery", "emergency", "medical", "maintenance", "other")
"""The choices a guard picks from for a manual let-through; ``other`` needs a typed note."""
EXTRA_REASONS = ("visitor_spent", "manual")
"""Reasons the screen shows beyond :class:`protocol.passes.Reason`."""
CARD_REJECT_REASONS = ("parity", "checksum", "length", "truncated", "format", "all_zero", "noise")
DOOR_ALARMS = ("forced", "held_open_warning", "held_open", "tamper", "relay_watchdog")


@cache
def load_locales() -> dict[str, dict[str, Any]]:
    return {lang: json.loads((LOCALE_DIR / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES}


def required_keys() -> dict[str, set[str]]:
    """Every key each language must have: the code's vocabularies, not just the other file's keys."""
    from edge.guard.vehicle_panel import OPEN_REASONS, REFUSE_REASONS
    from edge.visitors import FieldProblem

    return {
        "reason": {reason.value for reason in Reason} | set(EXTRA_REASONS),
        "flag": {flag.value for flag in Flag},
        "role": {role.name.lower() for role in Role},
        "manual_reason": set(MANUAL_REASONS),
        "card_reject": set(CARD_REJECT_REASONS),
        "door": set(DOOR_ALARMS),
        "problem": {problem.value for problem in FieldProblem},
        "open_reason": set(OPEN_REASONS),
        "refuse_reason": set(REFUSE_REASONS),
        "vehicle": {"resident", "visitor", "blacklisted", "unknown"},
        "duty": {"duty_check_in", "duty_check_out", "duty_refused", "patrol_checkin"},
        "duty_refusal": {reason.value for reason in DutyRefusalReason},
    }


def missing_texts(locales: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """``lang:section.key`` for every text a language lacks (compared with the code and each other)."""
    locales = locales or load_locales()
    wanted = required_keys()
    for section in ("ui", "error", "field"):
        wanted[section] = set().union(*(set(loc.get(section, {})) for loc in locales.values()))
    missing = []
    for lang, texts in locales.items():
        for section, keys in wanted.items():
            have = texts.get(section, {})
            missing.extend(f"{lang}:{section}.{key}" for key in sorted(keys) if not have.get(key))
    return missing
