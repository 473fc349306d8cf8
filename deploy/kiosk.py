"""The guard screen on the gate's own display: Chromium in kiosk mode under cage, at start-up.

cage is Debian's Wayland kiosk compositor: it shows one application full-screen and
nothing else, with no desktop to escape to.  The unit follows cage's own guide for
starting at boot under systemd (github.com/cage-kiosk/cage, wiki "Starting Cage on boot
with systemd"): a system unit that takes a virtual terminal, opens a PAM session through
logind (which grants the seat's display and input devices), and runs as its own user,
not as the agent's, so the browser can read nothing of the gate's keys or state.
"""

from __future__ import annotations

from deploy.layout import KIOSK_HOME, KIOSK_USER

UNIT = "gatepost-kiosk.service"
PACKAGES = ("cage", "chromium|chromium-browser")
"""Debian 12 has both; Raspberry Pi OS bookworm ships the browser as chromium-browser."""
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
TTY = "tty7"

PAM = """\
# The guard screen's kiosk session (gatepost-kiosk.service), written by gatepost install.
# pam_systemd registers it with logind, which gives cage the display and input devices.
auth     required  pam_unix.so nullok
account  required  pam_unix.so
session  required  pam_unix.so
session  required  pam_systemd.so
"""


def guard_url(listen: str) -> str:
    """The page the kiosk shows: the agent's guard screen, always over loopback."""
    port = listen.rpartition(":")[2]
    return f"http://127.0.0.1:{port}/"


def render_unit(url: str, browser: str) -> str:
    flags = " ".join(
        (
            "--kiosk",
            "--incognito",
            "--no-first-run",
            "--noerrdialogs",
            "--disable-session-crashed-bubble",
            "--disable-features=Translate",
            "--ozone-platform=wayland",
        )
    )
    return f"""\
# The guard screen on the gate's display, written by gatepost install because the gate's
# configuration enables [guard_screen]; `gatepost uninstall gate` removes it.
[Unit]
Description=gatepost guard screen (Chromium kiosk under cage)
After=systemd-user-sessions.service dbus.socket systemd-logind.service gatepost-edge.service
Wants=dbus.socket systemd-logind.service
Conflicts=getty@{TTY}.service
After=getty@{TTY}.service
# A gate without a display (or a chroot): nothing to show on, so do not start at all.
ConditionPathExistsGlob=/dev/dri/card*
ConditionPathExists=/dev/tty0

[Service]
Type=simple
User={KIOSK_USER}
PAMName={KIOSK_USER}
TTYPath=/dev/{TTY}
TTYReset=yes
TTYVHangup=yes
TTYVTDisallocate=yes
StandardInput=tty-fail
StandardOutput=journal
StandardError=journal
UtmpIdentifier={TTY}
UtmpMode=user
StateDirectory={KIOSK_HOME.name}
Environment=HOME={KIOSK_HOME}
ExecStart=/usr/bin/cage -- {browser} {flags} {url}
Restart=always
RestartSec=3

[Install]
WantedBy=multi-user.target
"""
