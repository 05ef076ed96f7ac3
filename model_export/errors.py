"""Typed export failures: one clear message naming what is wrong, and a stable reason code."""

from __future__ import annotations

from enum import StrEnum


class ExportReason(StrEnum):
    CHECKPOINT_UNREADABLE = "CHECKPOINT_UNREADABLE"  # missing, truncated, not a torch file
    CHECKPOINT_MISMATCH = "CHECKPOINT_MISMATCH"  # wrong architecture / keys / shapes / classes
    TOKENIZER_INVALID = "TOKENIZER_INVALID"  # SentencePiece model or vocab JSON unusable
    VOCAB_MISMATCH = "VOCAB_MISMATCH"  # vocabulary size disagrees with the embedding
    PARITY_FAILED = "PARITY_FAILED"  # ONNX output differs from PyTorch beyond tolerance
    QUANTIZATION_REFUSED = "QUANTIZATION_REFUSED"  # int8 agreement below the threshold
    CALIBRATION_INVALID = "CALIBRATION_INVALID"  # no usable calibration audio
    BUNDLE_INVALID = "BUNDLE_INVALID"  # verify found a problem
    OUTPUT_EXISTS = "OUTPUT_EXISTS"  # refusing to overwrite without --force


class ExportError(Exception):
    """Raised by model_export for anything the user must fix; the CLI prints it and exits 2."""

    def __init__(self, reason: ExportReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
