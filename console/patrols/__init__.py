"""Patrols (issue 18): routes of stations, rounds matched from ``patrol.checkin`` events, late and missed alarms.

``model`` holds a route and its checks, ``rounds`` the pure matching of check-ins to
rounds and the alarms a round calls for, ``store`` the routes in the console database,
``importer`` the routes' CSV file, ``watcher`` the thread of the running console that
raises the alarms, ``export`` the rows of the CSV and JSON exports.  docs/patrols.md.
"""
