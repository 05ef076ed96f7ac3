"""Strict checkpoint loading: original formats load exactly; anything else is one clear error."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from model_export.checkpoints import (
    load_densenet_checkpoint,
    load_kobert_checkpoint,
    save_densenet_checkpoint,
    save_kobert_checkpoint,
)
from model_export.densenet import DenseNet121, densenet_config
from model_export.errors import ExportError, ExportReason
from model_export.kobert import KoBertClassifier, kobert_config
from tests.export.model_export.conftest import Sources

pytestmark = pytest.mark.export


def _raises(reason: ExportReason, fn: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ExportError) as info:
        fn(*args, **kwargs)
    assert info.value.reason == reason, info.value
    return info.value.message


def _densenet_file(tmp_path: Path, state: dict[str, torch.Tensor], name: str = "x.pt") -> Path:
    path = tmp_path / name
    torch.save({"model_state_dict": state}, path)
    return path


def _wrapped_state(num_classes: int = 6) -> dict[str, torch.Tensor]:
    model = DenseNet121(densenet_config("tiny", num_classes=num_classes))
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def test_original_formats_round_trip_exactly(tiny_sources: Sources) -> None:
    binary = load_densenet_checkpoint(tiny_sources.binary, num_classes=2, size="tiny")
    saved = torch.load(tiny_sources.binary, weights_only=True)["model_state_dict"]
    for key, value in binary.state_dict().items():
        assert torch.equal(value, saved[f"model.{key}"]), key
    text = load_kobert_checkpoint(
        tiny_sources.text, vocab_size=tiny_sources.vocab_size, size="tiny"
    )
    plain = torch.load(tiny_sources.text, weights_only=True)
    assert set(plain) == set(text.state_dict())
    assert all(torch.equal(v, plain[k]) for k, v in text.state_dict().items())
    assert not binary.training and not text.training


def test_training_loop_extras_next_to_the_state_dict_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "epoch7.pt"
    torch.save({"model_state_dict": _wrapped_state(2), "epoch": 7, "best_f1": 0.92}, path)
    load_densenet_checkpoint(path, num_classes=2, size="tiny")


def test_missing_keys_are_named_with_a_count(tmp_path: Path) -> None:
    state = _wrapped_state()
    for key in [
        "model.features.norm5.weight",
        "model.features.norm5.bias",
        "model.classifier.0.bias",
    ]:
        del state[key]
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_densenet_checkpoint,
        _densenet_file(tmp_path, state),
        num_classes=6,
        size="tiny",
    )
    assert "3 missing keys" in msg
    for key in [
        "model.features.norm5.weight",
        "model.features.norm5.bias",
        "model.classifier.0.bias",
    ]:
        assert key in msg


def test_unexpected_keys_are_named_first_few_and_counted(tmp_path: Path) -> None:
    state = _wrapped_state()
    for i in range(8):
        state[f"model.head.extra{i}.weight"] = torch.zeros(1)
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_densenet_checkpoint,
        _densenet_file(tmp_path, state),
        num_classes=6,
        size="tiny",
    )
    assert "8 unexpected keys" in msg and "model.head.extra0.weight" in msg
    assert "(3 more)" in msg


def test_misshaped_key_names_both_shapes(tmp_path: Path) -> None:
    state = _wrapped_state()
    state["model.features.conv0.weight"] = torch.zeros(16, 3, 7, 7)  # trained on 3 channels
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_densenet_checkpoint,
        _densenet_file(tmp_path, state),
        num_classes=6,
        size="tiny",
    )
    assert "model.features.conv0.weight: checkpoint [16, 3, 7, 7] vs expected [16, 1, 7, 7]" in msg


def test_wrong_class_count_is_reported_as_such(tiny_sources: Sources) -> None:
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_densenet_checkpoint,
        tiny_sources.binary,
        num_classes=6,
        size="tiny",
        what="--audio-multiclass checkpoint",
    )
    assert "--audio-multiclass checkpoint" in msg and "has 2 classes" in msg
    assert "expected 6" in msg


def test_wrong_architecture_names_the_keys_that_differ(tiny_sources: Sources) -> None:
    # a tiny network where DenseNet-121 is expected (the growth and depth differ)
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_densenet_checkpoint,
        tiny_sources.binary,
        num_classes=2,
        size="full",
    )
    assert "does not match DenseNet-121" in msg
    assert "missing keys" in msg and "model.features.denseblock1.denselayer3.conv1.weight" in msg
    assert "mis-shaped" in msg


def test_a_kobert_file_is_not_a_densenet_checkpoint(tiny_sources: Sources) -> None:
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_densenet_checkpoint,
        tiny_sources.text,
        num_classes=2,
        size="tiny",
    )
    assert "'model_state_dict'" in msg and "bert.embeddings" in msg


def test_keys_without_the_wrapper_prefix_are_refused(tmp_path: Path) -> None:
    state = DenseNet121(densenet_config("tiny", num_classes=6)).state_dict()  # no wrapper
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_densenet_checkpoint,
        _densenet_file(tmp_path, dict(state)),
        num_classes=6,
        size="tiny",
    )
    assert "lack the wrapper's 'model.' prefix" in msg and "features.conv0.weight" in msg


def test_truncated_file_is_unreadable(tiny_sources: Sources, tmp_path: Path) -> None:
    data = tiny_sources.binary.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    msg = _raises(
        ExportReason.CHECKPOINT_UNREADABLE,
        load_densenet_checkpoint,
        cut,
        num_classes=2,
        size="tiny",
    )
    assert str(cut) in msg and "truncated or corrupt" in msg


@pytest.mark.parametrize(
    "content", [b"", b"hello, I am a text file\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 64]
)
def test_files_that_are_not_torch_checkpoints_are_unreadable(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    msg = _raises(
        ExportReason.CHECKPOINT_UNREADABLE,
        load_densenet_checkpoint,
        path,
        num_classes=2,
        size="tiny",
    )
    assert "is not a PyTorch checkpoint" in msg


def test_missing_file_and_directory_are_unreadable(tmp_path: Path) -> None:
    msg = _raises(
        ExportReason.CHECKPOINT_UNREADABLE,
        load_densenet_checkpoint,
        tmp_path / "nope.pt",
        num_classes=2,
    )
    assert "does not exist" in msg
    _raises(ExportReason.CHECKPOINT_UNREADABLE, load_densenet_checkpoint, tmp_path, num_classes=2)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return (os.mkdir, (self.marker,))


def test_pickled_code_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"model_state_dict": _Payload(str(marker))}, fh, protocol=2)
    msg = _raises(
        ExportReason.CHECKPOINT_UNREADABLE,
        load_densenet_checkpoint,
        path,
        num_classes=2,
        size="tiny",
    )
    assert "weights_only=True" in msg
    assert not marker.exists()


def test_vocabulary_size_disagreeing_with_the_embedding(tiny_sources: Sources) -> None:
    msg = _raises(
        ExportReason.VOCAB_MISMATCH,
        load_kobert_checkpoint,
        tiny_sources.text,
        vocab_size=tiny_sources.vocab_size + 2,
        size="tiny",
    )
    assert f"{tiny_sources.vocab_size + 2} entries" in msg
    assert f"{tiny_sources.vocab_size} rows in bert.embeddings.word_embeddings.weight" in msg


def test_kobert_class_count_and_missing_keys(tiny_sources: Sources, tmp_path: Path) -> None:
    state = torch.load(tiny_sources.text, weights_only=True)
    five = dict(
        state, **{"classifier.weight": torch.zeros(5, 32), "classifier.bias": torch.zeros(5)}
    )
    torch.save(five, tmp_path / "five.pt")
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_kobert_checkpoint,
        tmp_path / "five.pt",
        vocab_size=tiny_sources.vocab_size,
        size="tiny",
    )
    assert "has 5 classes" in msg
    del state["bert.pooler.dense.weight"]
    torch.save(state, tmp_path / "nopooler.pt")
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_kobert_checkpoint,
        tmp_path / "nopooler.pt",
        vocab_size=tiny_sources.vocab_size,
        size="tiny",
    )
    assert "1 missing key (bert.pooler.dense.weight)" in msg


def test_position_ids_of_older_transformers_are_accepted_when_they_are_arange(
    tiny_sources: Sources, tmp_path: Path
) -> None:
    state = torch.load(tiny_sources.text, weights_only=True)
    state["bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    torch.save(state, tmp_path / "old.pt")
    load_kobert_checkpoint(tmp_path / "old.pt", vocab_size=tiny_sources.vocab_size, size="tiny")
    state["bert.embeddings.position_ids"] = torch.zeros(1, 512, dtype=torch.int64)
    torch.save(state, tmp_path / "odd.pt")
    msg = _raises(
        ExportReason.CHECKPOINT_MISMATCH,
        load_kobert_checkpoint,
        tmp_path / "odd.pt",
        vocab_size=tiny_sources.vocab_size,
        size="tiny",
    )
    assert "position_ids is not arange(512)" in msg


def test_save_helpers_write_the_original_layouts(tmp_path: Path) -> None:
    dense = DenseNet121(densenet_config("tiny", num_classes=2))
    save_densenet_checkpoint(dense, tmp_path / "d.pt")
    raw = torch.load(tmp_path / "d.pt", weights_only=True)
    assert list(raw) == ["model_state_dict"]
    assert next(iter(raw["model_state_dict"])) == "model.features.conv0.weight"
    text = KoBertClassifier(kobert_config("tiny", vocab_size=300))
    save_kobert_checkpoint(text, tmp_path / "t.pt")
    raw = torch.load(tmp_path / "t.pt", weights_only=True)
    assert next(iter(raw)) == "bert.embeddings.word_embeddings.weight"
    assert "classifier.weight" in raw
