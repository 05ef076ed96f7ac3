"""Offline tooling: trained PyTorch checkpoints -> a verified ONNX model bundle."""
