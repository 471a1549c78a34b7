"""``python -m inference_svc``."""

import sys

from inference_svc.main import main

sys.exit(main())
