"""The guard screen: the gate's own display, served by the agent so it works with the network down.

See ``docs/guard-screen.md``.  :class:`GuardScreen` is what the agent holds.
"""

from edge.guard.screen import GuardActionError, GuardScreen

__all__ = ["GuardActionError", "GuardScreen"]
