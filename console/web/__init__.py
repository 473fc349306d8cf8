"""The web console: gates, live events, alarms, remote unlock, exports and the audit log (docs/web-console.md)."""
