"""Virtual hardware for every device a gate drives, and whole simulated sites.

Importing the simulator registers its devices (``sim://`` cameras, people at a door) with
:mod:`drivers.devices`; nothing in production imports it, so a real gate never can.
"""

from simulator.registration import register as _register

_register()
