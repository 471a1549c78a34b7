"""The Trainer service: training jobs in worker processes, durable in SQLite, served over gRPC.

Transport-free core: :mod:`jobs` (the job model), :mod:`store` (the job-store contract and its SQLite
implementation), :mod:`validation` and :mod:`datapaths` (what a job may read), :mod:`runner` (queue,
worker processes, stop, recovery after a restart), :mod:`worker` (the process that trains),
:mod:`metrics`. The gRPC adapter: :mod:`proto_mapping`, :mod:`servicer`, :mod:`auth`, :mod:`server`.
"""
