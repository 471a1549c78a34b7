"""``python -m gateway``: the same as ``tfic serve gateway``."""

from __future__ import annotations

import sys

from gateway.main import SETTINGS, run
from tfic.entry import service_main

if __name__ == "__main__":
    sys.exit(service_main("python -m gateway", "tfic's HTTP gateway", SETTINGS, run))
