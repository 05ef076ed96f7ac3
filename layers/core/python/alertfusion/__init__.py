"""alertfusion: emergency detection from short Korean recordings (audio + transcript fusion)."""

__version__ = "0.1.0"
