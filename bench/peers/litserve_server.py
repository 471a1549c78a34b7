"""The model behind LitServe's batching: ``python -m bench.peers.litserve_server --port P``.

``max_batch_size`` as tfic's (32) and ``batch_timeout`` as tfic's ``batch_timeout_micros`` (1 ms); one
inference worker on the CPU. Requests are JSON ``{"image": "<base64 JPEG>"}`` (LitServe's default JSON
decoding), answers ``{"probabilities": [...]}``; decoding runs in ``decode_request``, one image per
request, as LitServe's docs show.
"""

# No ``from __future__ import annotations``: LitServe reads decode_request's annotation at run time (a string
# would make FastAPI look for a query parameter named "request").
import argparse
import os
from typing import Any

import litserve as ls
import numpy as np

from bench.peers.model import PeerModel, from_env


class Classifier(ls.LitAPI):
    def setup(self, device: Any) -> None:
        self.model: PeerModel = from_env()

    def decode_request(self, request: dict[str, str]) -> np.ndarray:
        return self.model.decode_b64(request["image"])

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return {"probabilities": output.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=int(os.environ.get("PEER_MAX_BATCH", "32")))
    parser.add_argument("--batch-timeout", type=float, default=0.001)
    args = parser.parse_args()
    api = Classifier(max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False)


if __name__ == "__main__":
    main()
