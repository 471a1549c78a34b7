"""``python -m tfic_cli``: the ``tfic`` console script without the script (tests, ``tfic up``'s children)."""

import sys

from tfic_cli.main import main

sys.exit(main())
