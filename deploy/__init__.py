"""Installing gatepost on a gate, a console or a broker machine: see docs/install.md."""
