"""``gatepost install broker``: mosquitto from gatepost's configuration, under gatepost's own unit.

The broker's files are made by ``gatepost broker init`` (the installed program, run as
the target's), once: later users and passwords are added with ``gatepost broker
add-gate``, and a second install must not undo them.  mosquitto runs as its own user, so
the folder and what ``init`` writes there are given to its group.  Debian's own
``mosquitto.service`` would take the same port, so it is disabled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath

from deploy import common, logrotate
from deploy.changes import Change, Directory, EnableUnit, File, Remove
from deploy.layout import CONFIG_DIR, GATEPOST, LOGROTATE, STATE_DIR
from deploy.plan import Plan
from deploy.target import Target

BROKER_CONFIG = CONFIG_DIR / "broker"
BROKER_DATA = STATE_DIR / "broker"
MOSQUITTO = "mosquitto"


@dataclass
class BrokerInit(Change):
    def describe(self) -> str:
        return (
            f"make the broker's configuration: {GATEPOST} broker init --state {BROKER_CONFIG}"
            f" --data {BROKER_DATA} --user {MOSQUITTO}"
        )

    def pending(self, target: Target) -> bool:
        return not target.path(BROKER_CONFIG / "mosquitto.conf").is_file()

    def apply(self, target: Target) -> None:
        argv = [str(GATEPOST), "broker", "init", "--state", str(BROKER_CONFIG), "--data", str(BROKER_DATA)]
        target.run(target.inside([*argv, "--user", MOSQUITTO]))


@dataclass
class GroupReadable(Change):
    """``mosquitto.conf``, which mosquitto reads as its own user; ``admin.secret`` beside it stays root's."""

    path: PurePosixPath
    group: str

    def describe(self) -> str:
        return f"give {self.path} to group {self.group} (0640 root:{self.group})"

    def pending(self, target: Target) -> bool:
        path = target.path(self.path)
        if not path.is_file():
            return True
        info = path.stat()
        return info.st_gid != target.accounts().gid(self.group) or info.st_mode & 0o777 != 0o640

    def apply(self, target: Target) -> None:
        gid = target.accounts().gid(self.group)
        path = target.path(self.path)
        os.chown(path, 0, gid if gid is not None else -1)
        os.chmod(path, 0o640)


def plan_install(request: common.Request) -> Plan:
    plan = Plan("install broker")
    # procps: /bin/kill, the unit's ExecReload (Debian's minimal images lack it).
    plan.add(common.packages(request, [*common.BASE_PACKAGES, "mosquitto", "logrotate", "procps"]))
    plan.add(Directory(CONFIG_DIR, 0o755))
    if not request.target.path(STATE_DIR).is_dir():  # else the console's or gate's, 0711 already
        plan.add(Directory(STATE_DIR, 0o711))
    plan.add(Directory(BROKER_CONFIG, 0o750, "root", MOSQUITTO))
    plan.add(Directory(BROKER_DATA, 0o750, MOSQUITTO, MOSQUITTO))
    plan.add(common.environment(request))
    plan.add(BrokerInit(), GroupReadable(BROKER_CONFIG / "mosquitto.conf", MOSQUITTO))
    plan.add(*common.units("broker", plan))
    plan.add(EnableUnit("mosquitto.service", enable=False))
    plan.add(File(LOGROTATE, logrotate.render(MOSQUITTO).encode(), 0o644, what="logrotate rules"))
    plan.add(*common.chrony("broker", plan))
    plan.notes.append(
        f"add each gate's user with: {GATEPOST} broker add-gate --state {BROKER_CONFIG} --site SITE --gate GATE"
    )
    return plan


def plan_uninstall(request: common.Request, purge: bool) -> Plan:
    plan = Plan("uninstall broker" + (" and purge its data and users" if purge else ""))
    plan.add(*common.remove_units("broker"), Remove(LOGROTATE))
    plan.add(*common.remove_common("broker", request.target, purge))
    if purge:
        plan.add(Remove(BROKER_CONFIG, tree=True), Remove(BROKER_DATA, tree=True))
    plan.notes.append(common.UNINSTALL_NOTE + "; Debian's mosquitto.service stays disabled")
    return plan
