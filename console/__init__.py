"""The central console: stores every gate's events exactly once and acknowledges them.

``store`` holds the SQL, ``ingest`` the MQTT subscriber, ``config`` the TOML file and
``cli`` the ``gatepost console`` commands; see ``docs/console.md``.
"""
