"""``python -m trainer_svc``: run the Trainer gRPC service (same flags as ``tfic serve trainer``)."""

import sys

from trainer_svc.main import main

sys.exit(main())
