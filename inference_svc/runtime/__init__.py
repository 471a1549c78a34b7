"""Model runtimes behind one interface: in-process TensorFlow (default) or a remote TensorFlow Serving."""

from inference_svc.runtime.base import Runtime, RuntimeFactory

__all__ = ["Runtime", "RuntimeFactory"]
