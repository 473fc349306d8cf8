"""A role's configuration file and the key files it names, copied into ``/etc/gatepost``.

The operator prepares a folder: the TOML file and, by paths *relative to it*, the files it
names (``password_file = "mqtt.secret"``, ``root_key = "passes/root.pub"``).  Relative
paths resolve against the configuration's own folder (``edge.config.load_config`` does
the same), so the folder is copied as it is: the TOML to ``/etc/gatepost/<role>.toml``
(0640 root:gatepost, readable by the agent, not writable), each key to the same relative
place under ``/etc/gatepost`` (0600 gatepost, readable by the agent alone), other named
files (an allow-list) 0640.  An absolute path is the target's own business: the
installer only says when it is missing there.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deploy.changes import Change, Directory, File
from deploy.errors import InstallError
from deploy.layout import CONFIG_DIR, USER
from deploy.target import Target

KEYS = {
    "gate": (
        ("mqtt", "password_file"),
        ("mqtt", "tls_key"),
        ("passes", "root_key"),
        ("passes", "site_secret_file"),
    ),
    "console": (("mqtt", "password_file"), ("mqtt", "tls_key")),
}
"""Files that are secrets or pin trust: 0600, owned by the service user."""
PLAIN = {
    "gate": (("access", "allow_file"), ("mqtt", "tls_ca"), ("mqtt", "tls_cert")),
    "console": (("mqtt", "tls_ca"), ("mqtt", "tls_cert")),
}
WRITABLE = {
    "gate": (
        ("passes", "trust_bundle"),
        ("passes", "revocation_list"),
        ("outbox", "path"),
        ("cards", "store"),
        ("photos", "dir"),
        ("guard_screen", "visitor_db"),
    ),
    "console": (("store", "path"), ("cards", "registry"), ("cards", "thumbnails")),
}
"""Files the service replaces at run time: they belong under /var/lib/gatepost, not /etc."""


@dataclass(frozen=True)
class ConfigCopy:
    changes: list[Change]
    notes: list[str]


def _value(document: dict, section: str, key: str) -> str | None:
    value = document.get(section, {}).get(key) if isinstance(document.get(section), dict) else None
    return value if isinstance(value, str) and value else None


def config_path(role: str) -> PurePosixPath:
    return CONFIG_DIR / f"{role}.toml"


def plan_config(role: str, source: Path, target: Target) -> ConfigCopy:
    """The changes that put ``source`` and the files it names in place, and what a person must still do."""
    text = source.read_bytes()
    document = tomllib.loads(text.decode("utf-8"))
    changes: list[Change] = []
    notes: list[str] = []
    folders: set[PurePosixPath] = set()
    files: list[Change] = []

    def copy(section: str, key: str, mode: int, user: str, group: str, what: str) -> None:
        value = _value(document, section, key)
        if value is None:
            return
        relative = PurePosixPath(value)
        if relative.is_absolute():
            if not target.path(relative).exists():
                notes.append(f"{section}.{key} = {value!r} is not in the target yet; put it there ({what})")
            return
        local = source.parent / value
        if not local.is_file():
            raise InstallError(
                f"{source}: {section}.{key} names {value}, which is not beside the configuration"
            )
        installed = CONFIG_DIR / relative
        if ".." in relative.parts:
            raise InstallError(f"{source}: {section}.{key} = {value!r} leaves the configuration's folder")
        folders.update(p for p in installed.parents if p not in (CONFIG_DIR, *CONFIG_DIR.parents))
        files.append(File(installed, local.read_bytes(), mode, user, group, what))

    for section, key in KEYS.get(role, ()):
        copy(section, key, 0o600, USER, USER, "key")
    for section, key in PLAIN.get(role, ()):
        copy(section, key, 0o640, "root", USER, "file")
    for section, key in WRITABLE.get(role, ()):
        value = _value(document, section, key)
        if value is not None and not PurePosixPath(value).is_absolute():
            notes.append(
                f"{section}.{key} = {value!r} resolves under {CONFIG_DIR}, which the service cannot write;"
                " give an absolute path under /var/lib/gatepost"
            )
    changes.extend(Directory(folder, 0o750, "root", USER) for folder in sorted(folders))
    changes.append(File(config_path(role), text, 0o640, "root", USER, "configuration"))
    changes.extend(files)
    return ConfigCopy(changes, notes)


def installed_or_given(role: str, given: Path | None, target: Target) -> Path:
    """The configuration to plan from: the one given, else the one installed before."""
    if given is not None:
        if not given.is_file():
            raise InstallError(f"{given}: no such configuration file")
        return given
    installed = target.path(config_path(role))
    if not installed.is_file():
        raise InstallError(f"a first install of the {role} needs its configuration: --config FILE")
    return installed
