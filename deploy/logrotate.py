"""Log rotation for gatepost's only file log: the broker's (``log_dest file`` in broker/mosquitto.conf).

The gate agent and the console log to the journal, which rotates itself.  mosquitto keeps
its log file open, so the file is copied and truncated in place (``copytruncate``): a
few lines written during the copy can be lost, which is better than a broker that stops
logging until it is restarted.  ``su`` is needed because the folder belongs to mosquitto.
"""

from __future__ import annotations

from deploy.layout import STATE_DIR

BROKER_LOG = STATE_DIR / "broker" / "mosquitto.log"


def render(log_user: str = "mosquitto") -> str:
    return f"""\
# Written by gatepost install (broker); `gatepost uninstall broker` removes it.
{BROKER_LOG} {{
    su {log_user} {log_user}
    daily
    maxsize 50M
    rotate 14
    compress
    delaycompress
    missingok
    notifempty
    copytruncate
}}
"""
