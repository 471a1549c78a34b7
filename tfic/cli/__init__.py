"""The ``tfic`` command-line interface."""
