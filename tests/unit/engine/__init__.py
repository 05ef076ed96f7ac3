"""Inference engine tests."""
