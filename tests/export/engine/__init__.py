"""Engine fidelity against the PyTorch + librosa seed path."""
