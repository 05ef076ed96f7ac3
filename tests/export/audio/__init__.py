"""Decoding and features against the librosa reference."""
