"""A second broker for a site: the same CA, server certificate and accounts as the first.

A gate fails over between the brokers of its site (edge/failover.py) with one identity:
its certificate (or password) must open every one of them, and each must grant the same
ACLs.  So the second broker is not provisioned separately; it is given the first one's
identity files, and mosquitto's dynamic-security file is rendered from the same account
registry when it starts (:meth:`broker.launcher.Broker.start` syncs it).  Copy again
after every ``add-gate``/``remove`` on the first, then reload the second; docs/failover.md
gives the commands for a site.

Session state (``mosquitto.db``), configuration and logs are the broker's own and are not
copied: each broker keeps its own persistent sessions and retained messages.
"""

from __future__ import annotations

import shutil
from pathlib import Path

IDENTITY_FILES = ("users.json", "admin.secret", "dynamic-security.json")
IDENTITY_DIRS = ("pki", "credentials")
"""What makes a broker a broker *of this site*: the site CA, the server certificate, the accounts."""


def copy_identity(source: Path, target: Path) -> list[Path]:
    """Copy the site identity of the broker in ``source`` into ``target``; returns what was copied.

    The server certificate names the first broker's host; a second broker on another host
    needs its own, issued by the same CA (``gatepost broker`` on that host, docs/failover.md).
    """
    source, target = Path(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []
    for name in IDENTITY_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
            copied.append(target / name)
    for name in IDENTITY_DIRS:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, dirs_exist_ok=True)
            copied.append(target / name)
    return copied
