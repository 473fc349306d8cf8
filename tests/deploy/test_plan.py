"""The installer's plan against a --root folder: what --dry-run prints, what a run makes, and that
a second run, an uninstall and a purge each do exactly their part."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deploy import broker, console, gate
from deploy.accounts import Accounts
from deploy.plan import execute
from deploy.target import Target
from gatepost.cli import main
from tests.deploy.roots import environment_made, request


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Every path under ``root`` with its mode, owner and content: a dry run must leave it equal."""
    seen = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        seen[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, content)
    return seen


def install(root: Path, wheel: Path, config: Path | None, **options) -> list[str]:
    lines: list[str] = []
    req = request(root, wheel, config, **options)
    planner = {"gate": gate, "console": console, "broker": broker}[req.role]
    plan = planner.plan_install(req)
    plan.after.clear()  # the installed program's check-config runs in the chroot test
    environment_made(plan, req.target)
    execute(plan, req.target, dry_run=False, say=lines.append)
    return lines


def uninstall(root: Path, wheel: Path, purge: bool = False) -> list[str]:
    lines: list[str] = []
    req = request(root, wheel, None)
    execute(gate.plan_uninstall(req, purge), req.target, dry_run=False, say=lines.append)
    return lines


def mode_owner(root: Path, path: str) -> tuple[str, str, str]:
    info = (root / path.lstrip("/")).stat()
    accounts = Accounts.read(root)
    users = {uid: name for name, (uid, _) in accounts.users.items()}
    groups = {gid: name for name, (gid, _) in accounts.groups.items()}
    return f"{stat.S_IMODE(info.st_mode):04o}", users[info.st_uid], groups[info.st_gid]


def test_dry_run_prints_every_change_and_makes_none(root: Path, gate_folder: Path, wheel: Path, capsys):
    before = snapshot(root)
    status = main(
        [
            "install",
            "gate",
            "--config",
            str(gate_folder / "gate.toml"),
            "--root",
            str(root),
            "--pi",
            "--wheel",
            str(wheel),
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert snapshot(root) == before
    for expected in (
        "would create system group gpio",
        "create system user gatepost (home /var/lib/gatepost, no login shell, groups gpio,dialout,video,input)",
        "make directory /var/lib/gatepost (0711 gatepost:gatepost)",
        "write configuration /etc/gatepost/gate.toml (0640 root:gatepost",
        "write key /etc/gatepost/mqtt.secret (0600 gatepost:gatepost",
        "write key /etc/gatepost/passes/site.secret (0600 gatepost:gatepost",
        "make /opt/gatepost (a Python environment) from gatepost-0.1.0-py3-none-any.whl",
        "write unit /etc/systemd/system/gatepost-edge.service (0644 root:root",
        "would enable gatepost-edge.service",
        "write udev rules /etc/udev/rules.d/90-gatepost.rules",
        "set the '# BEGIN gatepost' block in /boot/firmware/config.txt: [all]; dtparam=strict_gpiod; gpio=17=op,dh",
        "would enable gatepost-kiosk.service",
    ):
        assert expected in out, expected
    assert out.count("would create system group input") == 1  # the agent's and the kiosk's, once


def test_install_makes_files_owners_and_modes_then_a_second_run_changes_nothing(
    root: Path, gate_folder: Path, wheel: Path
):
    first = install(root, wheel, gate_folder / "gate.toml", pi=True)
    assert any("done: create system user gatepost" in line for line in first)
    accounts = Accounts.read(root)
    assert {"gpio", "dialout", "video", "input"} <= accounts.groups_of("gatepost")
    assert mode_owner(root, "/etc/gatepost/gate.toml") == ("0640", "root", "gatepost")
    for key in ("mqtt.secret", "passes/root.pub", "passes/site.secret"):
        assert mode_owner(root, f"/etc/gatepost/{key}") == ("0600", "gatepost", "gatepost")
    assert mode_owner(root, "/var/lib/gatepost") == ("0711", "gatepost", "gatepost")
    assert (root / "etc/gatepost/passes/site.secret").read_bytes() == b"site secret"
    unit = (root / "etc/systemd/system/gatepost-edge.service").read_text()
    assert "/opt/gatepost/bin/gatepost edge run" in unit and ".venv" not in unit
    assert (root / "etc/systemd/system/multi-user.target.wants/gatepost-edge.service").is_symlink()
    assert "RuntimeWatchdogSec=15s" in (root / "etc/systemd/system.conf.d/gatepost.conf").read_text()
    rules = (root / "etc/udev/rules.d/90-gatepost.rules").read_text()
    assert 'KERNEL=="gpiochip*", GROUP="gpio"' in rules
    assert 'ATTRS{serial}=="NLS0001", SYMLINK+="gatepost/entry"' in rules
    assert 'KERNELS=="1-1.3", SYMLINK+="gatepost/exit"' in rules
    kiosk = (root / "etc/systemd/system/gatepost-kiosk.service").read_text()
    assert "http://127.0.0.1:8099/" in kiosk and "--kiosk" in kiosk and "User=gatepost-kiosk" in kiosk

    second = install(root, wheel, gate_folder / "gate.toml", pi=True)
    assert [line for line in second if "done:" in line] == []
    assert "  nothing to change: it is already as asked" in second


def test_config_txt_block_is_written_once_and_replaced_not_duplicated(
    root: Path, gate_folder: Path, wheel: Path
):
    config_txt = root / "boot/firmware/config.txt"
    install(root, wheel, gate_folder / "gate.toml", pi=True)
    install(root, wheel, gate_folder / "gate.toml", pi=True)
    text = config_txt.read_text()
    assert text.count("# BEGIN gatepost") == 1 and text.count("gpio=17=op,dh") == 1
    assert text.startswith("# the board's own settings\narm_64bit=1\n[all]\n")
    # An active-high relay board: the pin's boot level becomes low, in the same block.
    toml = gate_folder / "gate.toml"
    toml.write_text(toml.read_text().replace("relay_active_high = false", "relay_active_high = true"))
    install(root, wheel, toml, pi=True)
    text = config_txt.read_text()
    assert text.count("# BEGIN gatepost") == 1
    assert "gpio=17=op,dl" in text and "gpio=17=op,dh" not in text


def test_not_a_pi_leaves_config_txt_alone(root: Path, gate_folder: Path, wheel: Path):
    before = (root / "boot/firmware/config.txt").read_bytes()
    install(root, wheel, gate_folder / "gate.toml", pi=False)
    assert (root / "boot/firmware/config.txt").read_bytes() == before


def test_a_changed_key_is_rewritten_and_only_it(root: Path, gate_folder: Path, wheel: Path):
    install(root, wheel, gate_folder / "gate.toml", pi=True)
    (gate_folder / "mqtt.secret").write_text("new-password\n")
    lines = install(root, wheel, gate_folder / "gate.toml", pi=True)
    assert [line for line in lines if "done:" in line] == [
        "  done: write key /etc/gatepost/mqtt.secret (0600 gatepost:gatepost, 13 bytes)"
    ]
    # A key whose mode was loosened by hand is tightened again.
    os.chmod(root / "etc/gatepost/passes/site.secret", 0o644)
    lines = install(root, wheel, gate_folder / "gate.toml", pi=True)
    assert any("passes/site.secret" in line for line in lines if "done:" in line)
    assert mode_owner(root, "/etc/gatepost/passes/site.secret")[0] == "0600"


def test_guard_screen_off_removes_the_kiosk(root: Path, gate_folder: Path, wheel: Path):
    install(root, wheel, gate_folder / "gate.toml", pi=True)
    toml = gate_folder / "gate.toml"
    toml.write_text(toml.read_text().replace("enabled = true", "enabled = false"))
    lines = install(root, wheel, toml, pi=True)
    assert "  done: disable gatepost-kiosk.service" in lines
    assert not (root / "etc/systemd/system/gatepost-kiosk.service").exists()
    assert not (root / "etc/pam.d/gatepost-kiosk").exists()


def test_uninstall_keeps_data_and_keys_and_purge_removes_them(root: Path, gate_folder: Path, wheel: Path):
    install(root, wheel, gate_folder / "gate.toml", pi=True)
    (root / "var/lib/gatepost/outbox.db").write_bytes(b"events")
    lines = uninstall(root, wheel)
    assert "  done: disable gatepost-edge.service" in lines
    assert not (root / "etc/systemd/system/gatepost-edge.service").exists()
    assert not (root / "etc/udev/rules.d/90-gatepost.rules").exists()
    assert not (root / "etc/systemd/system.conf.d/gatepost.conf").exists()
    assert not (root / "opt/gatepost").exists()
    assert "# BEGIN gatepost" not in (root / "boot/firmware/config.txt").read_text()
    assert (
        root / "boot/firmware/config.txt"
    ).read_text() == "# the board's own settings\narm_64bit=1\n[all]\n"
    assert (root / "var/lib/gatepost/outbox.db").read_bytes() == b"events"
    assert (root / "etc/gatepost/passes/site.secret").exists()
    assert Accounts.read(root).uid("gatepost") is not None
    assert "  nothing to change: it is already as asked" in uninstall(root, wheel)

    uninstall(root, wheel, purge=True)
    assert not (root / "var/lib/gatepost").exists()
    assert not (root / "etc/gatepost").exists()
    assert Accounts.read(root).uid("gatepost") is None
    assert Accounts.read(root).gid("gpio") is not None  # shared groups stay


def test_first_install_without_config_is_refused(root: Path, wheel: Path, capsys):
    status = main(["install", "gate", "--root", str(root), "--wheel", str(wheel), "--dry-run"])
    assert status == 1
    assert "needs its configuration: --config FILE" in capsys.readouterr().err


def test_a_bad_configuration_is_refused_before_any_change(root: Path, gate_folder: Path, wheel: Path, capsys):
    toml = gate_folder / "gate.toml"
    toml.write_text(toml.read_text().replace('usb_path = "1-1.3"', 'usb_path = "usb3"'))
    before = snapshot(root)
    status = main(["install", "gate", "--config", str(toml), "--root", str(root), "--wheel", str(wheel)])
    err = capsys.readouterr().err
    assert status == 1
    assert "gate.toml:20: scanners.1.usb_path" in err
    assert snapshot(root) == before


def test_a_key_missing_beside_the_configuration_is_refused(root: Path, gate_folder: Path, wheel: Path):
    (gate_folder / "passes/site.secret").unlink()
    with pytest.raises(Exception, match=r"passes.site_secret_file names passes/site.secret"):
        install(root, wheel, gate_folder / "gate.toml", pi=True)


def test_broker_plan_disables_debians_mosquitto_and_rotates_its_log(root: Path, wheel: Path, capsys):
    status = main(["install", "broker", "--root", str(root), "--wheel", str(wheel), "--dry-run"])
    out = capsys.readouterr().out
    assert status == 0
    assert "would disable mosquitto.service" not in out  # not installed in this root, so nothing to disable
    assert "write logrotate rules /etc/logrotate.d/gatepost" in out
    assert "broker init --state /etc/gatepost/broker --data /var/lib/gatepost/broker" in out
    assert "would enable gatepost-broker.service" in out


def test_target_accounts_are_the_roots_not_this_machines(root: Path):
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nsomeone:x:4242:4242::/:/bin/false\n")
    assert Target(root).accounts().uid("someone") == 4242


def _wanted_packages(root: Path, wheel: Path, config: Path) -> list[str]:
    from deploy.changes import Packages

    plan = gate.plan_install(request(root, wheel, config))
    return [p for change in plan.changes if isinstance(change, Packages) for p in change.wanted]


def test_a_camera_gate_gets_the_libraries_cv2_links_and_a_plain_gate_does_not(
    root: Path, gate_folder: Path, wheel: Path
):
    """rapidocr's opencv-python may be the ``cv2`` a gate imports; it links libGL and GLib, absent on Pi OS Lite."""
    assert not set(gate.CV2_LIBRARIES) & set(_wanted_packages(root, wheel, gate_folder / "gate.toml"))
    config = gate_folder / "gate.toml"
    config.write_text(
        config.read_text() + '\n[[cameras]]\nname = "camera"\ndirection = "in"\nsource = "/dev/video0"\n'
    )
    assert set(gate.CV2_LIBRARIES) <= set(_wanted_packages(root, wheel, config))
