"""``gatepost install gate``: a gate agent on a Raspberry Pi (or any Debian 12 machine).

What a gate needs beyond the common parts: the ``gatepost`` user in the device groups,
udev links for its USB readers, the relay's boot level in ``config.txt`` on a Pi, and
the guard screen's kiosk when the configuration enables it.  Also the Python packages
no wheel provides for this machine: lgpio off CPython 3.11 and evdev for keyboard-mode
readers come from Debian, seen through the environment's system site packages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deploy import common, kiosk
from deploy.bootconfig import SYSTEM_WATCHDOG, WATCHDOG_CONF, config_txt, config_txt_lines, is_raspberry_pi
from deploy.changes import Block, Change, EnableUnit, File, Group, Remove, User
from deploy.configfiles import config_path, installed_or_given, plan_config
from deploy.environment import target_arch, target_python
from deploy.errors import InstallError
from deploy.layout import (
    BLOCK_BEGIN,
    BLOCK_END,
    CONFIG_TXT,
    GATE_GROUPS,
    KIOSK_GROUPS,
    KIOSK_HOME,
    KIOSK_PAM,
    KIOSK_USER,
    UDEV_RULES,
    UNIT_DIR,
)
from deploy.plan import Plan
from deploy.udev import ReaderLink, render_rules
from deploy.wheels import PYTHON

if TYPE_CHECKING:
    from edge.config import EdgeConfig


def _load(path: Path) -> EdgeConfig:
    from edge.config import load_config
    from protocol.configfile import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        raise InstallError(f"the gate's configuration has mistakes:\n{exc}") from None


def plan_install(request: common.Request) -> Plan:
    target = request.target
    source = installed_or_given("gate", request.config, target)
    config = _load(source)
    plan = Plan(f"install gate {config.site}/{config.gate}")
    copy = plan_config("gate", source, target)
    plan.notes.extend(copy.notes)

    wanted = list(common.BASE_PACKAGES)
    system_python: list[str] = []
    arch, python = target_arch(target), target_python(target)
    if config.door is not None and arch == "arm64" and python not in (None, PYTHON):
        system_python.append("python3-lgpio")  # lgpio's only wheel is for CPython 3.11
    if config.keyboards:
        system_python.append("python3-evdev")  # evdev has no wheel at all
    show_kiosk = request.kiosk if request.kiosk is not None else config.guard_screen.enabled
    if show_kiosk and not config.guard_screen.enabled:
        raise InstallError("--kiosk shows the guard screen, which this gate's configuration does not enable")
    if show_kiosk:
        wanted.extend(kiosk.PACKAGES)
    wanted.extend(camera_packages(config))
    extras = ["pyzbar"] if any(c.decoder == "pyzbar" for c in config.cameras) else []

    plan.add(common.packages(request, [*wanted, *system_python]))
    plan.add(*common.service_user(GATE_GROUPS))
    plan.add(*common.folders())
    plan.add(*copy.changes)
    plan.add(common.environment(request, extras, system_site_packages=bool(system_python)))
    plan.add(*common.units("gate", plan))
    plan.add(*_udev(config))
    plan.add(*_boot_config(request, config))
    plan.add(*common.chrony("gate", plan))
    plan.add(*(_kiosk(request, config) if show_kiosk else _no_kiosk()))
    mqtt = config.mqtt
    plan.add(*common.mqtt_credential(request, mqtt.credential, mqtt.password_file is not None, plan))
    plan.after.append(common.check_config("gate", config_path("gate")))
    return plan


CV2_LIBRARIES = ("libgl1", "libglib2.0-0")
"""What ``cv2`` links: plate recognition's rapidocr-onnxruntime pulls in opencv-python beside our
headless build, and whichever of the two was installed last provides ``cv2``; the full build needs
``libGL.so.1`` and ``libglib-2.0``, which a Raspberry Pi OS Lite image lacks."""


def camera_packages(config: EdgeConfig) -> list[str]:
    """The Debian libraries a gate needs to import ``cv2``: only a gate with a camera or a vehicle lane does."""
    return list(CV2_LIBRARIES) if config.cameras or config.lane else []


def _udev(config: EdgeConfig) -> list[Change]:
    readers = [ReaderLink(r.name, r.usb_serial, r.usb_path) for r in [*config.scanners, *config.rdm6300]]
    rules = render_rules(readers)
    return [File(UDEV_RULES, rules.encode(), 0o644, what="udev rules", triggers=frozenset({"udev"}))]


def _boot_config(request: common.Request, config: EdgeConfig) -> list[Change]:
    pi = request.pi if request.pi is not None else is_raspberry_pi(request.target)
    if not pi:
        return []
    path = config_txt(request.target)
    if config.door is None:
        return [Block(path, BLOCK_BEGIN, BLOCK_END)]  # no relay: nothing of ours belongs there
    return [
        Block(path, BLOCK_BEGIN, BLOCK_END, config_txt_lines(config)),
        File(SYSTEM_WATCHDOG, WATCHDOG_CONF.encode(), 0o644, what="hardware watchdog settings"),
    ]


def _kiosk(request: common.Request, config: EdgeConfig) -> list[Change]:
    target = request.target
    browser = next((b for b in kiosk.BROWSERS if target.path(b).exists()), kiosk.BROWSERS[0])
    unit = kiosk.render_unit(kiosk.guard_url(config.guard_screen.listen), browser)
    return [
        *(Group(name) for name in KIOSK_GROUPS),
        User(KIOSK_USER, KIOSK_HOME, list(KIOSK_GROUPS), "gatepost guard screen"),
        File(KIOSK_PAM, kiosk.PAM.encode(), 0o644, what="PAM session"),
        File(UNIT_DIR / kiosk.UNIT, unit.encode(), 0o644, what="unit", triggers=frozenset({"systemd"})),
        EnableUnit(kiosk.UNIT),
    ]


def _no_kiosk() -> list[Change]:
    return [
        EnableUnit(kiosk.UNIT, enable=False),
        Remove(UNIT_DIR / kiosk.UNIT, triggers=frozenset({"systemd"})),
        Remove(KIOSK_PAM),
    ]


def plan_uninstall(request: common.Request, purge: bool) -> Plan:
    plan = Plan("uninstall gate" + (" and purge its data and keys" if purge else ""))
    plan.add(*common.remove_units("gate"), *_no_kiosk(), Remove(UDEV_RULES, triggers=frozenset({"udev"})))
    plan.add(Remove(SYSTEM_WATCHDOG))
    for path in CONFIG_TXT:
        if request.target.path(path).is_file():
            plan.add(Block(path, BLOCK_BEGIN, BLOCK_END))
    plan.add(*common.remove_common("gate", request.target, purge))
    if purge:
        plan.add(Remove(KIOSK_HOME, tree=True))
    plan.notes.append(common.UNINSTALL_NOTE)
    return plan
