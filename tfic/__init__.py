"""tfic's shared core: what the trainer, the inference service and the gateway all rely on.

Nothing here imports a transport (gRPC servers, HTTP frameworks) except the small adapters in
``tfic.grpc_errors``; the services build on these modules and on the generated ``tfic.v1`` protos.
"""

__version__ = "0.1.0"
