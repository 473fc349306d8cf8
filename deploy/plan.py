"""A plan: the changes of one install or uninstall, shown by ``--dry-run`` and carried out by a real run.

Both go through :func:`execute`, so a dry run cannot drift from what a real run does: the
same list is walked, and the only difference is whether :meth:`Change.apply` is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from deploy.changes import Change
from deploy.target import Target

Say = Callable[[str], None]


@dataclass
class Plan:
    title: str
    """``install gate north`` — what the plan is for, in its first line of output."""
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the installer could not do or check and a person must know (printed every time)."""
    after: list[Callable[[Target, Say], None]] = field(default_factory=list)
    """Checks run after a real run has applied its changes (``gatepost edge check-config``)."""
    restart: list[str] = field(default_factory=list)
    """Units restarted on a running system when anything changed, so new code and settings take hold."""

    def add(self, *changes: Change) -> None:
        """Append ``changes``; one equal to a change already planned (a group two users share) is skipped."""
        for change in changes:
            if change not in self.changes:
                self.changes.append(change)


@dataclass
class Outcome:
    pending: list[str]
    applied: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def execute(plan: Plan, target: Target, *, dry_run: bool, say: Say = print) -> Outcome:
    """Walk the plan: print what is pending and, unless ``dry_run``, apply it in order.

    A change is looked at just before it runs, so in a real run a later change sees what
    the earlier ones did (the user exists by the time its folders are given to it).  In a
    dry run nothing runs, so a change that depends on an earlier pending one is listed too.
    """
    where = "" if target.in_place else f" into {target.root}"
    say(f"{'would ' if dry_run else ''}{plan.title}{where}:")
    pending: list[str] = []
    applied: list[str] = []
    triggered: set[str] = set()
    for change in plan.changes:
        if not change.pending(target):
            continue
        line = change.describe()
        pending.append(line)
        if dry_run:
            say(f"  would {line}")
            continue
        change.apply(target)
        applied.append(line)
        triggered |= change.triggers
        say(f"  done: {line}")
    if not pending:
        say("  nothing to change: it is already as asked")
    if not dry_run:
        _tell_running_system(target, triggered, say)
        if applied and target.live:
            for unit in plan.restart:
                target.run(["systemctl", "restart", unit])
                say(f"  done: systemctl restart {unit}")
        for check in plan.after:
            check(target, say)
    for note in plan.notes:
        say(f"note: {note}")
    return Outcome(pending, applied)


def _tell_running_system(target: Target, triggered: set[str], say: Say) -> None:
    if not triggered:
        return
    if not target.live:
        say("  (no running systemd here: units and udev rules take effect at the next boot)")
        return
    if "systemd" in triggered:
        target.run(["systemctl", "daemon-reload"])
        say("  done: systemctl daemon-reload")
    if "udev" in triggered:
        target.run(["udevadm", "control", "--reload"])
        target.run(["udevadm", "trigger", "--subsystem-match=tty", "--action=add"])
        say("  done: udevadm control --reload; udevadm trigger (tty)")
