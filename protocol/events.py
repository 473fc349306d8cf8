"""Event types and the payload each carries.

The envelope (:class:`protocol.messages.Event`) is generic; these names are the stable
vocabulary inside it.  Consumers switch on ``Event.type`` and read ``Event.data`` by the
keys documented here and in ``docs/protocol.md``.
"""

from __future__ import annotations

from typing import Final

AGENT_STARTED: Final = "agent.started"
"""The agent started: ``{"version", "clock_trusted", "backlog"}``."""
AGENT_STOPPED: Final = "agent.stopped"
"""Clean shutdown: ``{"reason"}``."""
ACCESS_SCAN: Final = "access.scan"
"""A credential was presented and decided: ``{"credential", "code", "granted", "reason", "reader", "symbology"}``."""
SCANNER_REJECTED: Final = "scanner.rejected"
"""Serial input that was not a credential: ``{"reader", "reason", "detail", "length"}``."""
SCANNER_CONNECTED: Final = "scanner.connected"
SCANNER_DISCONNECTED: Final = "scanner.disconnected"
"""The scanner's port came or went: ``{"reader", "detail"}``."""
OUTBOX_OVERFLOW: Final = "outbox.overflow"
"""Events were refused because the outbox was full, or because its disk failed while the memory
journal was full too: ``{"dropped", "first_time", "last_time", "by_type", "journal_full"}``."""
OUTBOX_DEGRADED: Final = "outbox.degraded"
"""The outbox's disk refused a write; events are held in memory and sent as they are:
``{"error", "held"}``."""
OUTBOX_RECOVERED: Final = "outbox.recovered"
"""The disk took the held events again and the outbox is whole: ``{"degraded_s", "failures"}``."""
OUTBOX_LOST: Final = "outbox.lost"
"""The agent restarted while events were held in memory only: ``{"boot", "first_seq",
"last_seq", "held", "lost", "acknowledged", "by_type"}`` — at most ``lost`` of the
sequence numbers ``first_seq..last_seq`` never reached the console."""
CLOCK_UNTRUSTED: Final = "clock.untrusted"
"""The gate's clock is not trusted (at start, or trust was lost): ``{"detail"}`` says why —
not synchronised, behind the newest stored event, or seen stepping backwards."""
CLOCK_TRUSTED: Final = "clock.trusted"
"""The gate's clock is trusted again (synchronised, and past every time it trusted before): ``{"detail"}``."""
PASSES_DOCUMENT: Final = "passes.document"
"""A signed trust bundle or revocation list arrived: ``{"document", "applied", "reason", "version", "detail"}``."""
COMMAND_REJECTED: Final = "command.rejected"
"""A command from the console was refused: ``{"reason", "detail", "command_id"}``."""
ACCESS_MANUAL: Final = "access.manual"
"""A guard let someone through by hand at the guard screen: ``{"guard", "reason", "note", "door"}``."""
VISITOR_REGISTERED: Final = "visitor.registered"
"""A guard issued a visitor pass good at this gate only:
``{"name", "unit", "phone" (masked but the last 4), "reason", "guard", "code_hash", "expires"}``."""
GUARD_PIN_REJECTED: Final = "guard.pin_rejected"
"""A guard action on the guard screen with a wrong PIN:
``{"action", "failures", "locked_for_s", "source", "address"}`` (``source``: ``local`` for the
gate's own screen, ``remote`` for any other address)."""
GUARD_PIN_LOCKOUT: Final = "guard.pin_lockout"
"""Guard actions paused for one source after repeated wrong PINs (the console raises an alarm):
``{"action", "failures", "locked_for_s", "source", "address"}``."""
CARDS_APPLIED: Final = "cards.applied"
"""The gate applied a door-card list update: ``{"version", "previous", "hash", "count", "kind", "source"}``."""
CARDS_REJECTED: Final = "cards.rejected"
"""A card-list update was refused (once per reason and held version): ``{"reason", "detail", "source", "held"}``."""
CARDS_REQUESTED: Final = "cards.requested"
"""The gate asked the console for an update: ``{"version", "hash", "count", "reason", "sent"}``."""
DOOR_FIRE_ALARM: Final = "door.fire_alarm"
"""The door's fire-alarm input tripped: the lock is released and stays released, whatever cards, the
exit button, commands or the relay watchdog do, until it clears: ``{"door_open"}``."""
DOOR_FIRE_ALARM_CLEARED: Final = "door.fire_alarm_cleared"
"""The fire-alarm input cleared; a ``door.locked`` (cause ``fire_cleared``) follows: ``{"alarm_for_s"}``."""
READER_ONLINE: Final = "reader.online"
"""A supervised reader (OSDP) answers its polls again, over the secure channel unless its bus is
plain: ``{"reader", "bus", "address", "detail", "offline_readers", "refused_readers"}`` — the last
two count the gate's readers still offline or refused (0 and 0: all are back)."""
READER_OFFLINE: Final = "reader.offline"
"""A supervised reader stopped answering (cut or shorted cable, no power): ``{"reader", "bus",
"address", "detail"}``.  The console raises an alarm."""
READER_REFUSED: Final = "reader.refused"
"""A reader answers but cannot prove it holds the gate's key for it (wrong key, factory key, no
key installed); nothing it sends is believed: ``{"reader", "bus", "address", "detail"}``."""
READER_TAMPER: Final = "reader.tamper"
"""A reader's own tamper switch opened (its housing is off the wall): ``{"reader", "bus", "address"}``."""
READER_TAMPER_CLEARED: Final = "reader.tamper_cleared"
"""The reader's tamper switch closed again: ``{"reader", "bus", "address"}``."""
READER_POWER: Final = "reader.power"
"""A reader's power monitor changed: ``{"reader", "bus", "address", "failure"}``."""
READER_KEY_INSTALLED: Final = "reader.key_installed"
"""Install mode gave a reader its own secure channel key, kept in the gate's key store:
``{"reader", "bus", "address"}``."""
LANE_OPENED: Final = "lane.opened"
"""A vehicle lane's arm was pulsed open: ``{"lane", "cause" (grant, manual), "reason", "operator", "note"}``
(``note``: the guard's cause of a manual open)."""
LANE_CLOSED: Final = "lane.closed"
"""The arm was lowered (or the controller lowered it): ``{"lane", "cause" (passed, timeout, manual,
controller), "open_for_s"}``."""
LANE_VEHICLE_LEFT: Final = "lane.vehicle_left"
"""A vehicle left the loop: ``{"lane", "through" (it had an open and used it), "dwell_s"}``."""
LANE_CLOSE_HELD: Final = "lane.close_held"
"""A close was due but the loop reads a vehicle under the arm (anti-crush): held until clear: ``{"lane", "cause"}``."""
LANE_OPEN_TOO_LONG: Final = "lane.open_too_long"
"""The arm has been up longer than ``open_too_long_s`` (an alarm): ``{"lane", "open_for_s", "present"}``."""
LANE_FORCED_OPEN: Final = "lane.forced_open"
"""The arm went up, or a vehicle passed, with no open given (an alarm): ``{"lane", "detail"}``."""
LANE_MANUAL_OPEN: Final = "lane.manual_open"
"""A guard opened the arm by hand: ``{"lane", "cause", "operator"}``."""
LANE_OPEN_REFUSED: Final = "lane.open_refused"
"""An open (grant or manual) was not given: ``{"lane", "reason" (relay_watchdog, stopped, no_cause), "operator"}``."""
LANE_RELAY_WATCHDOG: Final = "lane.relay_watchdog"
"""A barrier command pulse did not end and the watchdog cut it: ``{"lane", "output", "on_for_s"}``."""
LANE_PLATE_UNREAD: Final = "lane.plate_unread"
"""A vehicle was in the lane but no plate was read: ``{"lane", "reason", "detail", "best"}``."""
LPR_REJECTED: Final = "lpr.rejected"
"""An LPR camera's HTTP push was refused: ``{"camera", "reason", "detail", "remote", "suppressed"}``
(``suppressed``: further refusals of the same camera and reason folded into this one)."""
VEHICLE_REGISTERED: Final = "vehicle.registered"
"""A guard registered a visitor vehicle good at this gate until ``expires``:
``{"plate", "credential", "unit", "note", "guard", "lane", "expires"}``."""
VEHICLE_GUARD: Final = "vehicle.guard"
"""A guard's answer on the guard screen to a plate the lane did not open for (a near miss, an
unknown or blacklisted car), recorded before it acts: ``{"action", "guard", "lane", "read",
"decision", ...}`` — ``read`` is what the lane read and ``decision`` the reason it was refused;
``action`` is ``correct`` (+ ``plate``, the guard's reading, and ``resembled``: it is the near
miss's registered plate; the plate is then decided again), ``open`` (+ ``reason``, ``note``; then
``Lane.open``) or ``refuse`` (+ ``reason``)."""
