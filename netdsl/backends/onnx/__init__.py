"""The ONNX backend: the emitter (``emit``: one ONNX node per IR op, from the op registry) and
the export around it (``export``: weights bound, inference rewrites, metadata)."""
