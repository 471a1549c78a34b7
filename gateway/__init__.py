"""tfic's HTTP gateway: SageMaker's image contracts and TensorFlow Serving's REST API over gRPC.

Stateless: every request is translated to one call on the inference service's ``tfic.v1.Classifier``
through one shared ``grpc.aio`` channel (round-robin over DNS), and its answer back to JSON.
"""
