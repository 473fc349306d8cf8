"""What every role's installation shares: the request, the service user, the environment, units, chrony."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from deploy.changes import Change, Directory, EnableUnit, File, Group, Packages, Remove, RemoveUser, User
from deploy.credential import UNIT_CREDENTIAL, MqttCredential, credential_path
from deploy.environment import Environment, target_arch
from deploy.errors import InstallError
from deploy.layout import CHRONY_CONF, CONFIG_DIR, GATEPOST, KIOSK_USER, PREFIX, STATE_DIR, UNIT_DIR, USER
from deploy.plan import Plan, Say
from deploy.source import WheelSource
from deploy.target import Target
from deploy.units import ROLE_UNITS, chrony_conf, role_units

BASE_PACKAGES = ("python3", "python3-venv", "chrony")
"""python3-venv: the environment's pip; chrony: events carry the gate's time (docs/install.md)."""


@dataclass
class Request:
    """What ``gatepost install ROLE`` was asked to do."""

    role: str
    target: Target
    source: WheelSource
    config: Path | None = None
    pi: bool | None = None
    """--pi / --no-pi; None: look at the device tree."""
    kiosk: bool | None = None
    """--kiosk / --no-kiosk; None: when the gate's guard screen is enabled."""
    mqtt_secret: Path | None = None
    extras: list[str] = field(default_factory=list)


def packages(request: Request, wanted: Sequence[str]) -> Packages:
    arch = target_arch(request.target)
    debs = request.source.debs_for(arch) if arch else []
    return Packages(list(wanted), debs)


def service_user(groups: Sequence[str]) -> list[Change]:
    changes: list[Change] = [Group(name) for name in groups]
    changes.append(User(USER, STATE_DIR, list(groups), "gatepost"))
    return changes


def folders() -> list[Change]:
    """``/var/lib/gatepost`` is 0711, as the units' ``StateDirectoryMode=`` has it: mosquitto, another
    user, reaches its own folder inside it on a machine that also runs the console.  ``/etc/gatepost``
    is 0755 for the same reason; its keys are 0600 each."""
    return [Directory(CONFIG_DIR, 0o755), Directory(STATE_DIR, 0o711, USER, USER)]


def units(role: str, plan: Plan) -> list[Change]:
    """The role's shipped units, written and enabled; restarted after a change on a running system."""
    changes: list[Change] = []
    found = role_units(role)
    if not found:
        raise InstallError(f"the package ships no unit for the {role}: is this a gatepost wheel?")
    for unit in found:
        changes.append(
            File(
                UNIT_DIR / unit.name, unit.text.encode(), 0o644, what="unit", triggers=frozenset({"systemd"})
            )
        )
        if unit.installable:
            changes.append(EnableUnit(unit.name))
            plan.restart.append(unit.name)
    return changes


def remove_units(role: str) -> list[Change]:
    changes: list[Change] = []
    for unit in role_units(role):
        if unit.installable:
            changes.append(EnableUnit(unit.name, enable=False))
        changes.append(Remove(UNIT_DIR / unit.name, triggers=frozenset({"systemd"})))
    return changes


def chrony(role: str, plan: Plan) -> list[Change]:
    text = chrony_conf(role)
    if text is None:
        plan.notes.append("this package ships no chrony settings yet: chrony runs with Debian's defaults")
        return []
    return [File(CHRONY_CONF, text, 0o644, what="chrony settings")]


def environment(
    request: Request, extras: Sequence[str] = (), system_site_packages: bool = False
) -> Environment:
    return Environment(request.source, [*extras, *request.extras], system_site_packages)


def mqtt_credential(
    request: Request, credential: str | None, has_password_file: bool, plan: Plan
) -> list[Change]:
    """The broker password: as an encrypted credential when the configuration names one."""
    if credential is None:
        if request.mqtt_secret is not None and has_password_file:
            raise InstallError(
                "--mqtt-secret is for [mqtt] credential; this configuration uses password_file"
            )
        return []
    if credential != UNIT_CREDENTIAL:
        plan.notes.append(
            f"[mqtt] credential = {credential!r}, but the units load {UNIT_CREDENTIAL!r}: use that name"
        )
    if request.mqtt_secret is not None:
        return [MqttCredential(credential, request.mqtt_secret.read_bytes())]
    if not request.target.path(credential_path(credential)).is_file():
        plan.notes.append(
            f"no {credential_path(credential)} yet: install again with --mqtt-secret FILE (the password"
            " from gatepost broker add-gate), or run systemd-creds encrypt yourself"
        )
    return []


def check_config(role: str, config: PurePosixPath) -> Callable[[Target, Say], None]:
    """After a real run: the installed program checks the installed configuration, as its unit will."""
    command = {"gate": "edge", "console": "console"}[role]

    def check(target: Target, say: Say) -> None:
        done = target.run(target.inside([str(GATEPOST), command, "check-config", str(config)]), check=False)
        output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
        if done.returncode != 0:
            raise InstallError(f"the installed configuration does not pass check-config:\n{output}")
        say(f"  checked: {output}")

    return check


def remove_common(role: str, target: Target, purge: bool) -> list[Change]:
    """The environment and shared files, unless another role still uses them; with ``purge``, data and keys."""
    others = [
        unit.name
        for other in ROLE_UNITS
        if other != role
        for unit in role_units(other)
        if target.path(UNIT_DIR / unit.name).exists()
    ]
    changes: list[Change] = []
    if not others:
        changes += [Remove(PREFIX, tree=True), Remove(CHRONY_CONF)]
    if purge and others:  # only this role's own configuration: the others still run from the rest
        changes += [Remove(CONFIG_DIR / f"{role}.toml")]
    elif purge:
        changes += [Remove(CONFIG_DIR, tree=True), Remove(STATE_DIR, tree=True)]
        changes += [RemoveUser(USER), RemoveUser(KIOSK_USER)]
    return changes


UNINSTALL_NOTE = (
    "Debian packages (chrony, mosquitto, cage, chromium) and shared groups (gpio, dialout, video,"
    " input) are left installed"
)
