"""Portable final models: ONNX export checked with onnxruntime, and ``matswarm predict``."""
