"""Export of trained policies to ONNX (`dex4d export`); see policy.py for the contract."""
