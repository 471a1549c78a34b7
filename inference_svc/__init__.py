"""The inference service: decode, resize and dynamically batch image requests behind gRPC.

Layers, transport-free at the bottom::

    settings.py    the frozen settings, each field a flag and a TFIC_ variable (tfic.settings)
    runtime/       the model behind one small interface (in-process TensorFlow or remote TF Serving)
    workers.py     the small thread pools that decode and run batches off the event loop
    decode_processes.py, decode_worker.py   decoding in worker processes instead (--decode-pool processes)
    batcher.py     dynamic batching per model version
    modelconfig.py which models: base-path scan or TensorFlow Serving's model config file
    repository.py  the model repository: version policies, file-system watcher, load/warm-up/swap
    preprocess.py  decoding and resizing in a bounded worker pool
    predictor.py   the core the transports call: resolve a model, decode, batch
    metrics.py     Prometheus metrics (one registry per server)
    servicers/     gRPC adapters (tfic.v1.Classifier and TensorFlow Serving's APIs); protobuf lives here only
    admission.py   refusing over-limit inference calls before their request is read
    accept.py      more calls accepted at once than grpc.aio's one per method (--accept-depth)
    server.py      the grpc.aio server: health, reflection, keepalive, graceful shutdown
    main.py        ``tfic serve inference`` / ``python -m inference_svc``
"""
