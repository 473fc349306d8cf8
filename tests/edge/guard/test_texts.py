"""Every word on the guard screen exists in Chinese and English, and every reason the gate can give."""

from __future__ import annotations

import copy

from edge.guard.texts import load_locales, missing_texts


def test_every_reason_flag_role_and_interface_text_is_in_both_languages():
    assert missing_texts() == []


def test_a_missing_text_is_caught():
    locales = copy.deepcopy(load_locales())
    del locales["zh"]["reason"]["revoked"]
    del locales["en"]["ui"]["print"]
    assert missing_texts(locales) == ["zh:reason.revoked", "en:ui.print"]
