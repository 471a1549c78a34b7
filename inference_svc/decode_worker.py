"""``python -m inference_svc.decode_worker FD OPTIONS``: one decode process, started by the inference service
(``--decode-pool processes``, :mod:`inference_svc.decode_processes`); it imports no TensorFlow."""

import sys

from inference_svc.decode_processes import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
