"""ONNX export (opset 17, legacy exporter) with dynamic axes, and the parity check that
refuses an export that does not compute what PyTorch computes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from model_export.densenet import DenseNet121, densenet_config
from model_export.errors import ExportError, ExportReason
from model_export.kobert import KoBertClassifier, kobert_config
from model_export.onnx_export import (
    audio_parity,
    chain_concat_file,
    chain_concats,
    export_audio_model,
    export_text_model,
    optimize_text_graph,
    ort_session,
    pad_batch,
    run_audio,
    run_text,
    text_parity,
    torch_text_logits,
)

pytestmark = pytest.mark.export


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> tuple[DenseNet121, Path]:
    torch.manual_seed(0)
    model = DenseNet121(densenet_config("tiny", num_classes=6)).eval()
    path = tmp_path_factory.mktemp("onnx") / "audio.onnx"
    export_audio_model(model, path, (1, 192, 64))
    return model, path


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> tuple[KoBertClassifier, Path]:
    torch.manual_seed(0)
    model = KoBertClassifier(kobert_config("tiny", vocab_size=300)).eval()
    path = tmp_path_factory.mktemp("onnx") / "text.onnx"
    export_text_model(model, path)
    return model, path


def _sequences(lengths: list[int], seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[2, *rng.integers(5, 300, n - 2).tolist(), 3] for n in lengths]


def test_audio_graph_contract(audio: tuple[DenseNet121, Path]) -> None:
    model = onnx.load(str(audio[1]))
    onnx.checker.check_model(model)
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 17
    (image,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert image.name == "image" and dims == ["batch", 1, 192, 64]
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == ["logits"]


def test_chained_dense_block_concats_change_nothing(
    audio: tuple[DenseNet121, Path], tmp_path: Path
) -> None:
    _, path = audio
    raw = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Concat"]
    assert max(len(n.input) for n in raw) > 2  # timm's torch.cat of every earlier feature
    chained = tmp_path / "chained.onnx"
    shutil.copy(path, chained)
    assert chain_concat_file(chained) > 0
    concats = [n for n in onnx.load(str(chained)).graph.node if n.op_type == "Concat"]
    # tiny DenseNet, blocks of 2 layers: the first layer's one-input Concat is gone
    assert all(len(n.input) == 2 for n in concats) and len(concats) == len(raw) - 4
    images = np.random.default_rng(3).standard_normal((2, 1, 192, 64)).astype(np.float32)
    np.testing.assert_array_equal(
        run_audio(ort_session(chained), images), run_audio(ort_session(path), images)
    )


def test_chain_concats_on_a_hand_built_graph() -> None:
    from onnx import TensorProto, helper

    def concat(inputs: list[str], out: str, axis: int = 1) -> onnx.NodeProto:
        return helper.make_node("Concat", inputs, [out], axis=axis)

    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "abc"]
    graph = helper.make_graph(
        [
            concat(["a"], "a1"),  # a copy: dropped, its readers read a
            concat(["a1", "b"], "ab"),
            concat(["a", "b", "c"], "abc"),  # -> Concat(ab, c)
            concat(["a", "b", "c"], "abc0", axis=0),  # another axis: left alone
            helper.make_node("Relu", ["a1"], ["r"]),
            concat(["r"], "out"),  # a graph output: kept
        ],
        "g",
        info,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("abc", "abc0", "out")],
    )
    assert chain_concats(graph) == 2
    nodes = {n.output[0]: list(n.input) for n in graph.node}
    assert "a1" not in nodes
    assert nodes["ab"] == ["a", "b"] and nodes["abc"] == ["ab", "c"]
    assert nodes["abc0"] == ["a", "b", "c"] and nodes["r"] == ["a"] and nodes["out"] == ["r"]
    assert chain_concats(graph) == 0  # nothing left to chain


def test_audio_dynamic_batch_matches_pytorch(audio: tuple[DenseNet121, Path]) -> None:
    model, path = audio
    images = np.random.default_rng(1).standard_normal((5, 1, 192, 64)).astype(np.float32)
    session = ort_session(path)
    with torch.no_grad():
        want = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(run_audio(session, images, batch=5), want, atol=1e-4)
    np.testing.assert_allclose(run_audio(session, images, batch=1), want, atol=1e-4)
    assert audio_parity(model, path, images, name="audio") <= 1e-4


def test_audio_parity_refuses_an_export_of_other_weights(audio: tuple[DenseNet121, Path]) -> None:
    model, path = audio
    other = DenseNet121(densenet_config("tiny", num_classes=6)).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        head = other.classifier[0]
        assert isinstance(head, torch.nn.Linear)
        head.bias.add_(1e-3)  # a tiny, uniform shift of every logit
    images = np.random.default_rng(2).standard_normal((3, 1, 192, 64)).astype(np.float32)
    with pytest.raises(ExportError) as info:
        audio_parity(other, path, images, name="audio_multiclass")
    assert info.value.reason == ExportReason.PARITY_FAILED
    assert "audio_multiclass" in info.value.message and "tolerance 0.0001" in info.value.message


def test_text_graph_contract(text: tuple[KoBertClassifier, Path]) -> None:
    model = onnx.load(str(text[1]))
    names = [i.name for i in model.graph.input]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    for value in model.graph.input:
        dims = [d.dim_param for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", "sequence"]
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [o.name for o in model.graph.output] == ["logits"]


def test_text_padded_batches_of_any_length_match_pytorch_on_each_text_alone(
    text: tuple[KoBertClassifier, Path],
) -> None:
    model, path = text
    sequences = _sequences([3, 60, 17, 9, 41, 4])
    want = torch_text_logits(model, sequences)
    session = ort_session(path)
    np.testing.assert_allclose(run_text(session, sequences, pad_id=1, batch=6), want, atol=1e-4)
    np.testing.assert_allclose(run_text(session, sequences, pad_id=1, batch=1), want, atol=1e-4)
    assert text_parity(model, path, sequences, pad_id=1, name="text") <= 1e-4


def test_text_parity_refuses_different_weights(text: tuple[KoBertClassifier, Path]) -> None:
    model, path = text
    other = KoBertClassifier(kobert_config("tiny", vocab_size=300)).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.classifier.bias[2] += 1e-3
    with pytest.raises(ExportError) as info:
        text_parity(other, path, _sequences([5, 12, 30]), pad_id=1, name="text")
    assert info.value.reason == ExportReason.PARITY_FAILED


def test_parity_needs_batches_and_lengths_to_mean_something(
    text: tuple[KoBertClassifier, Path], audio: tuple[DenseNet121, Path]
) -> None:
    with pytest.raises(ValueError):
        text_parity(text[0], text[1], _sequences([7, 7]), pad_id=1, name="text")
    with pytest.raises(ValueError):
        audio_parity(audio[0], audio[1], np.zeros((1, 1, 192, 64), np.float32), name="audio")


def test_bert_fusion_keeps_the_contract_and_parity(
    text: tuple[KoBertClassifier, Path], tmp_path: Path
) -> None:
    model, path = text
    fused = tmp_path / "fused.onnx"
    stats = optimize_text_graph(path, fused, num_heads=2, hidden_size=32)
    assert stats.get("Attention") == 2 and stats.get("EmbedLayerNormalization") == 1
    graph = onnx.load(str(fused)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    ops = {n.op_type for n in graph.node}
    assert {"Attention", "EmbedLayerNormalization", "LayerNormalization"} <= ops
    assert "SkipLayerNormalization" not in ops  # slower than Add + LayerNorm on CPU (docstring)
    assert text_parity(model, fused, _sequences([3, 60, 25, 8]), pad_id=1, name="fused") <= 1e-4


def test_pad_batch_right_pads_and_masks() -> None:
    ids, mask, types = pad_batch([[2, 7, 3], [2, 3]], pad_id=1)
    assert ids.tolist() == [[2, 7, 3], [2, 3, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert types.tolist() == [[0, 0, 0], [0, 0, 0]]
    assert ids.dtype == mask.dtype == types.dtype == np.int64
