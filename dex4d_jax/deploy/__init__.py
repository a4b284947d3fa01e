"""Deploy runtime: runs an exported ONNX policy with numpy and onnxruntime only (no JAX)."""
