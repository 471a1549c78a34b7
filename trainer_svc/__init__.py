"""The trainer: data readers, the training pipeline, backbones, and the Trainer gRPC service."""
