"""Serving: `perennial predict`, in process or through ONNX Runtime."""
