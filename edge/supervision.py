"""What "alive" means for a gate agent, and the status line systemd shows for it.

The watchdog pings (:class:`gatepost.supervision.Supervisor`) stop when any of these has
shown no progress for longer than the watchdog period:

- ``decision``: a credential's path — repeat filter, decision, door, guard screen — on
  whichever reader's thread presented it.  Readers call it synchronously, so a reader
  thread stuck here is caught here.
- ``event-commit``: taking an event into the outbox, from any thread (readers, the door's
  event delivery, the link's callbacks).
- ``outbox-writer``: the outbox's writer thread answers a probe (an empty
  acknowledgement, committed like any other; one every half watchdog period).  A commit
  that *fails* is an answer: a full disk is not mended by a restart.
- ``door``: the door controller's timer and delivery threads run and its lock is free
  within the deadline.
- ``relay-watchdog``: the relay watchdog's thread runs and is not stuck in a cut.
- ``readers``: no reader's own thread has ended while the reader is open (the serial and
  EM4100 readers reconnect for ever, so an ended thread is a bug).  A pyserial read waits
  at most its 50 ms timeout and a network camera's at most FFmpeg's read timeout, so a
  reader's thread can only stall in its callback: the ``decision`` part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatepost.supervision import Check, FutureProbe, Part, ThreadsAlive

if TYPE_CHECKING:
    from edge.agent import GateAgent

LOCK_PROBE_S = 0.05
"""How long one look waits for a lock another thread holds; the deadline counts the misses."""


def gate_parts(agent: GateAgent) -> list[Part]:
    parts: list[Part] = [
        agent.deciding,
        agent.recording,
        FutureProbe("outbox-writer", lambda: agent.outbox.ack_async(())),
        ThreadsAlive("readers", lambda: all(getattr(device, "alive", True) for device in agent.devices)),
    ]
    door = agent.door
    if door is not None:
        parts.append(Check("door", lambda: door.responsive(LOCK_PROBE_S)))
        watchdog = door.hardware.watchdog
        if watchdog is not None:
            parts.append(Check("relay-watchdog", lambda: watchdog.responsive(LOCK_PROBE_S)))
    return parts


def gate_status(agent: GateAgent) -> str:
    """One line for ``systemctl status``: backlog, broker, readers, and a fire alarm if there is one."""
    readers = ", ".join(f"{name} {state}" for name, state in sorted(agent.reader_states.items()))
    line = (
        f"backlog {agent.outbox.backlog}; broker {'connected' if agent.link.connected else 'disconnected'}; "
        f"readers: {readers or 'none'}"
    )
    if agent.door is not None and agent.door.machine.fire_alarm:
        line = "FIRE ALARM: door released; " + line
    return line
