"""gRPC adapters over :mod:`inference_svc.predictor`; protobuf is converted here and nowhere else."""
