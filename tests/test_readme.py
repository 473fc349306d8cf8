"""The README's example gate configuration is valid: documentation that cannot rot silently."""

from __future__ import annotations

import re
from pathlib import Path

from edge.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_readme_gate_configuration_validates(tmp_path: Path):
    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no TOML example"
    path = tmp_path / "gate.toml"
    path.write_text(blocks[0])
    config = load_config(path)
    assert (config.site, config.gate) == ("longtan", "north")
    assert config.door is not None and config.wiegand and config.cameras and config.scanners
