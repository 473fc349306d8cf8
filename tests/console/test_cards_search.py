"""``CardRegistry.search`` and ``count``: SQL over the registry's own table, in credential order."""

from __future__ import annotations

from pathlib import Path

from console.credentials import CardRegistry
from protocol.credentials import CardEntry


def _registry(tmp_path: Path) -> CardRegistry:
    registry = CardRegistry(tmp_path / "cards.db")
    registry.put(
        [
            CardEntry("wiegand26:13:13067", "Li Wei", "3-2-401"),
            CardEntry("wiegand26:13:13068", "Wang Fang", "3-2-402"),
            CardEntry("wiegand26:14:00001", "王小明", "5-1-101"),
            CardEntry("mifare:04a1b2c3", "Zhang_Li", "7-1-1%"),
        ]
    )
    return registry


def test_credential_prefix_holder_and_unit_substring(tmp_path: Path) -> None:
    with _registry(tmp_path) as registry:
        assert [e.credential for e in registry.search("wiegand26:13:", 10, 0)] == [
            "wiegand26:13:13067",
            "wiegand26:13:13068",
        ]
        # a credential is matched by its beginning only
        assert registry.search("13067", 10, 0) == []
        assert [e.holder for e in registry.search("wei", 10, 0)] == ["Li Wei"]  # any case
        assert [e.holder for e in registry.search("小明", 10, 0)] == ["王小明"]
        assert [e.unit for e in registry.search("3-2-", 10, 0)] == ["3-2-401", "3-2-402"]
        assert registry.search("nobody", 10, 0) == []
        assert registry.count("3-2-") == 2 and registry.count("nobody") == 0


def test_like_wildcards_are_literal(tmp_path: Path) -> None:
    with _registry(tmp_path) as registry:
        assert [e.holder for e in registry.search("_", 10, 0)] == ["Zhang_Li"]
        assert [e.unit for e in registry.search("%", 10, 0)] == ["7-1-1%"]


def test_paging_and_count_of_everything(tmp_path: Path) -> None:
    with _registry(tmp_path) as registry:
        everything = [e.credential for e in registry.search("", 10, 0)]
        assert everything == sorted(everything) and len(everything) == 4
        assert [e.credential for e in registry.search("", 2, 0)] == everything[:2]
        assert [e.credential for e in registry.search("", 2, 2)] == everything[2:]
        assert registry.count() == 4
        registry.remove(["mifare:04a1b2c3"])
        assert registry.count() == 3 and registry.search("Zhang", 10, 0) == []


def test_search_returns_the_whole_entry(tmp_path: Path) -> None:
    with _registry(tmp_path) as registry:
        (entry,) = registry.search("wiegand26:14", 10, 0)
        assert entry == registry.get("wiegand26:14:00001")
