"""The MQTT broker of a site: mosquitto's configuration, its users and ACLs, and a launcher.

Import the submodules you need (``broker.launcher``, ``broker.provision``,
``broker.config``); this package imports nothing so that ``gatepost --help`` stays fast.
"""
