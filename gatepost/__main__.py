"""``python -m gatepost`` is the same as the ``gatepost`` command."""

import sys

from gatepost.cli import main

sys.exit(main())
