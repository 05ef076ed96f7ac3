"""`model_export verify` on a manifest that does not parse (model_export.verify needs PyTorch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_export.verify import verify_bundle

pytestmark = pytest.mark.export


def test_verify_reports_a_manifest_that_does_not_parse(tmp_path: Path) -> None:
    from model_export.errors import ExportError, ExportReason

    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError) as info:
        verify_bundle(tmp_path)
    assert info.value.reason == ExportReason.BUNDLE_INVALID
    assert "not a readable JSON manifest" in info.value.message
