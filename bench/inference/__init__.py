"""Benchmarks of the inference service: gRPC load generator, in-process limit, decode cost.

``python -m bench.inference.run`` runs everything side by side and writes JSON + a PNG plot to
``bench/inference/results/``; see docs/inference.md for the numbers and how to read them.
"""
