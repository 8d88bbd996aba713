"""``pulsegate load``: an open- and closed-model HTTP/1.1 load generator with scenarios and reports."""
