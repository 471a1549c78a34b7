"""The inference service: decode, resize and dynamically batch image requests behind gRPC.

Layers, transport-free at the bottom::

    runtime/      the model behind one small interface (in-process TensorFlow or remote TF Serving)
    batcher.py    dynamic batching per model version
    repository.py the model repository: version policies, file-system watcher, load/warm-up/swap
    preprocess.py decoding and resizing in a bounded worker pool
    predictor.py  the core the transports call: resolve a model, decode, batch
    servicers/    gRPC adapters (tfic.v1.Classifier and TensorFlow Serving's APIs), protobuf lives here only
    server.py     the grpc.aio server: health, reflection, keepalive, graceful shutdown
"""
