"""The tests' own machinery: the tiny-bundle cache and the import block."""
