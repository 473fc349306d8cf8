"""``gatepost install console``: the central subscriber, store and web console."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deploy import common
from deploy.changes import Directory
from deploy.configfiles import config_path, installed_or_given, plan_config
from deploy.errors import InstallError
from deploy.layout import STATE_DIR, USER
from deploy.plan import Plan

if TYPE_CHECKING:
    from console.config import ConsoleConfig


def _load(path: Path) -> ConsoleConfig:
    from console.config import load_config
    from protocol.configfile import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        raise InstallError(f"the console's configuration has mistakes:\n{exc}") from None


def plan_install(request: common.Request) -> Plan:
    target = request.target
    source = installed_or_given("console", request.config, target)
    config = _load(source)
    plan = Plan(f"install console {config.name}")
    copy = plan_config("console", source, target)
    plan.notes.extend(copy.notes)
    extras = ["postgres"] if config.store.url else []
    plan.add(common.packages(request, common.BASE_PACKAGES))
    plan.add(*common.service_user(()))
    plan.add(*common.folders())
    plan.add(Directory(STATE_DIR / "console", 0o700, USER, USER))
    plan.add(*copy.changes)
    plan.add(common.environment(request, extras))
    plan.add(*common.units("console", plan))
    plan.add(*common.chrony("console", plan))
    mqtt = config.mqtt
    plan.add(*common.mqtt_credential(request, mqtt.credential, mqtt.password_file is not None, plan))
    plan.after.append(common.check_config("console", config_path("console")))
    return plan


def plan_uninstall(request: common.Request, purge: bool) -> Plan:
    plan = Plan("uninstall console" + (" and purge its data and keys" if purge else ""))
    plan.add(*common.remove_units("console"), *common.remove_common("console", request.target, purge))
    plan.notes.append(common.UNINSTALL_NOTE)
    return plan
