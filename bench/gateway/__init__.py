"""Benchmark of the HTTP gateway against direct gRPC: ``python -m bench.gateway.run``."""
