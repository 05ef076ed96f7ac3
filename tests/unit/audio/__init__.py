"""Unit tests of audio decoding and the early-fusion feature image."""
