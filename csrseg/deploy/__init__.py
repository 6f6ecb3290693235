"""Deployment: the whole pipeline as ONNX, and its INT8 quantization."""
