"""int8 quantization: the agreement report's arithmetic, the refusal, and that the quantized
graphs really are int8 (QDQ for the audio models, dynamic MatMulInteger for the text model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from alertfusion.agreement import judge_logits, logit_spreads
from alertfusion.manifest import AudioPreprocessing
from alertfusion.text import TextEncoder
from model_export.calibration import CalibrationImages, calibration_images, calibration_texts
from model_export.demo import RECIPES, demo_checkpoint_dir, demo_densenet, load_demo_checkpoints
from model_export.errors import ExportError, ExportReason
from model_export.onnx_export import (
    compute_threads,
    export_audio_model,
    export_text_model,
    ort_session,
    run_audio,
    run_text,
)
from model_export.quantize import (
    agreement_report,
    batchnorm_as_depthwise_conv,
    block_range_overrides,
    centred_logit_error,
    centred_logit_errors,
    enforce_threshold,
    keeps_shared_ranges,
    per_tensor_margin,
    quantize_audio_model,
    quantize_audio_static,
    quantize_text_dynamic,
    softmax,
)
from tests.conftest import SAMPLES

pytestmark = pytest.mark.export


def test_agreement_report_counts_top1_and_the_largest_probability_shift() -> None:
    fp32 = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.1], [3.0, -3.0]])
    int8 = np.array([[1.9, 0.0], [0.1, 2.0], [1.2, 1.0], [3.0, -3.0]])
    report = agreement_report(fp32, int8, method="static_qdq", threshold=0.99)
    assert report.n_inputs == 4
    assert report.top1_agreement == pytest.approx(0.75)
    want = np.abs(softmax(fp32) - softmax(int8)).max()
    assert report.max_probability_shift == pytest.approx(want)
    assert want == pytest.approx(
        abs(softmax(np.array([[1.0, 1.1]]))[0, 0] - softmax(np.array([[1.2, 1.0]]))[0, 0])
    )
    # judged by margins, each input against the other inputs' largest error spread: the
    # flipped third input's fp32 margin (0.1) is not beyond the others' spread (0.1)
    assert report.max_logit_error == pytest.approx(np.sqrt(0.2**2 + 0.1**2))
    assert report.max_logit_spread == pytest.approx(0.3)
    assert (report.n_decisive, report.near_ties, report.decisive_agreement) == (3, 1, 1.0)
    enforce_threshold("audio_binary", report)  # a near tie never refuses a build


def test_non_finite_int8_logits_never_agree() -> None:
    fp32 = np.array([[1.0, 0.0], [0.0, 1.0]])
    int8 = np.array([[np.nan, 0.0], [0.0, 1.0]])
    report = agreement_report(fp32, int8, method="dynamic", threshold=0.5)
    assert report.top1_agreement == 0.0 and report.max_probability_shift == 1.0
    assert report.decisive_agreement == 0.0
    with pytest.raises(ExportError):
        enforce_threshold("text", report)


def test_threshold_refusal_names_the_model_and_the_way_out() -> None:
    # three inputs with wide margins, one whose int8 error (8.5) flips a margin of 10 where no
    # other input moved at all: a real disagreement among four decisive inputs
    fp32 = np.array([[100.0, 0, 0], [0, 100.0, 0], [0, 0, 100.0], [10.0, 0, 0]])
    int8 = fp32.copy()
    int8[3] = [4.0, 6.0, 0.0]
    report = agreement_report(fp32, int8, method="dynamic", threshold=0.8)
    assert (report.n_decisive, report.near_ties) == (4, 0)
    with pytest.raises(ExportError) as info:
        enforce_threshold("text", report)
    assert info.value.reason == ExportReason.QUANTIZATION_REFUSED
    assert "75.00%" in info.value.message and "80.00%" in info.value.message
    assert "--keep-fp32 text" in info.value.message
    enforce_threshold("text", report.model_copy(update={"threshold": 0.75}))  # equal passes


def test_a_model_whose_int8_error_swamps_every_margin_is_refused() -> None:
    # every input's error is larger than the margins of the others: nothing can be shown
    fp32 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    int8 = fp32 + np.array([[0.0, 2.0], [2.0, 0.0], [-2.0, 0.0]])
    report = agreement_report(fp32, int8, method="static_qdq", threshold=0.99)
    assert report.n_decisive == 0 and report.decisive_agreement is None
    with pytest.raises(ExportError) as info:
        enforce_threshold("audio_binary", report)
    assert "no calibration input has an fp32 margin beyond the int8 error" in info.value.message


def concats_copy(graph: onnx.GraphProto) -> bool:
    """Whether every Concat's inputs are dequantized with the scale and zero point its output
    is quantized with (ONNX Runtime's QLinearConcat then copies bytes)."""
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def params(node: onnx.NodeProto) -> tuple[float, int]:
        return float(constants[node.input[1]]), int(constants[node.input[2]])

    quantized_as = {n.input[0]: params(n) for n in graph.node if n.op_type == "QuantizeLinear"}
    concats = [n for n in graph.node if n.op_type == "Concat"]
    assert len(concats) >= 4
    for concat in concats:
        assert all(producer[i].op_type == "DequantizeLinear" for i in concat.input)
        if {params(producer[i]) for i in concat.input} != {quantized_as[concat.output[0]]}:
            return False
    return True


def test_centred_logit_error_ignores_a_rows_shift() -> None:
    fp32 = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert centred_logit_error(fp32, fp32 + 5.0) == 0.0
    int8 = np.array([[1.0, 2.0, 3.6], [0.3, 0.0, 0.0]])  # centred changes: 0.2 x2, 0.4; 0.2, 0.1 x2
    assert centred_logit_error(fp32, int8) == pytest.approx((0.2 + 0.2 + 0.4 + 0.2 + 0.1 + 0.1) / 6)
    assert centred_logit_error(fp32, np.array([[np.nan, 0, 0], [0, 0, 0]])) == float("inf")
    rows = centred_logit_errors(fp32, np.array([[np.inf, 0, 0], [0.3, 0.0, 0.0]]))
    assert rows[0] == float("inf") and rows[1] == pytest.approx(0.4 / 3)


def test_per_tensor_ranges_are_kept_only_when_measurably_closer_to_fp32() -> None:
    rng = np.random.default_rng(0)
    plain = rng.uniform(0.03, 0.05, 36)
    # shared ranges worse by the same 0.01 on every image: measurable, per-tensor is kept
    assert per_tensor_margin(plain + 0.01, plain) == pytest.approx(0.0, abs=1e-12)
    assert not keeps_shared_ranges(plain + 0.01, plain)
    # worse by 0.01 on average but +-0.1 image by image: within the noise, shared is kept
    swing = np.tile([0.1, -0.1], 18)
    assert per_tensor_margin(plain + 0.01 + swing, plain) > 0.01
    assert keeps_shared_ranges(plain + 0.01 + swing, plain)
    # better or equal: shared
    assert keeps_shared_ranges(plain - 0.01, plain)
    assert keeps_shared_ranges(plain, plain)
    # two standard errors of the mean paired difference: differences 0.1 and 0.3 -> 2 * 0.1
    assert per_tensor_margin(np.array([0.1, 0.3]), np.zeros(2)) == pytest.approx(0.2)
    assert per_tensor_margin(np.array([0.1]), np.zeros(1)) == 0.0
    # non-finite logits lose; both non-finite: shared (and the build's threshold refuses it)
    inf = np.full(36, np.inf)
    assert not keeps_shared_ranges(inf, plain)
    assert keeps_shared_ranges(plain, inf)
    assert keeps_shared_ranges(inf, inf)


@pytest.fixture(scope="module")
def calibration_set() -> CalibrationImages:
    return calibration_images(SAMPLES, AudioPreprocessing())


@pytest.fixture(scope="module")
def calibration(calibration_set: CalibrationImages) -> np.ndarray:
    return calibration_set.images


def test_static_qdq_quantization_of_a_trained_like_densenet(
    calibration: np.ndarray, calibration_set: CalibrationImages, tmp_path: Path
) -> None:
    cal = calibration_set
    with compute_threads(1):
        model = demo_densenet("tiny", 6, seed=2, cal=cal, recipe=RECIPES["tiny"])
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    export_audio_model(model, fp32, (1, 192, 64))
    quantize_audio_static(fp32, int8, calibration, work=tmp_path)
    graph = onnx.load(str(int8)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # DenseNet's pre-activation norms became quantized depthwise convolutions
    assert "BatchNormalization" not in ops
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert any(a.name == "group" and a.i > 1 for n in convs for a in n.attribute)
    quantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert all(n.input[0] in quantized and n.input[1] in quantized for n in convs)
    int8_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 20  # every convolution's weights
    assert [i.name for i in graph.input] == ["image"]
    # one range per dense block: every Concat copies bytes, none requantizes, and each joins
    # the block's previous Concat and one new feature map (chained)
    assert concats_copy(graph)
    assert all(len(n.input) == 2 for n in graph.node if n.op_type == "Concat")
    # the logits are the classifier's float output, not 256 levels
    assert next(n for n in graph.node if "logits" in n.output).op_type == "Gemm"
    reference = run_audio(ort_session(fp32), calibration)
    # this CPU's int8 kernels, and the QDQ graph through float kernels (another CPU's exact
    # integer arithmetic, up to rounding): judged by margins, neither may really disagree with
    # fp32 (near ties are reported, not failed)
    decisive = 0
    for path in ("kernels", "reference"):
        report = agreement_report(
            reference,
            run_audio(ort_session(int8, reference=path == "reference"), calibration),
            method="static_qdq",
            threshold=0.9,
        )
        assert report.n_inputs == len(calibration)
        assert report.decisive_agreement is None or report.decisive_agreement >= 0.9, (
            path,
            report,
        )
        decisive += report.n_decisive or 0
    assert decisive > 0  # not every answer a near tie: the check has teeth
    assert not list(tmp_path.glob("*.pre.onnx"))  # the pre-processed copy is cleaned up
    # per-tensor ranges: timm's Concats, left as exported (chained, each would requantize)
    plain = tmp_path / "plain.onnx"
    quantize_audio_static(fp32, plain, calibration, work=tmp_path, shared_block_ranges=False)
    plain_graph = onnx.load(str(plain)).graph
    assert max(len(n.input) for n in plain_graph.node if n.op_type == "Concat") > 2
    assert not concats_copy(plain_graph)


@pytest.mark.parametrize("seed", [2, 3])
def test_the_layout_kept_is_the_one_the_rule_chose(
    calibration: np.ndarray, calibration_set: CalibrationImages, tmp_path: Path, seed: int
) -> None:
    cal = calibration_set
    with compute_threads(1):
        model = demo_densenet("tiny", 2, seed=seed, cal=cal, recipe=RECIPES["tiny"])
    fp32, out, work = tmp_path / "fp32.onnx", tmp_path / "int8.onnx", tmp_path / "work"
    work.mkdir()
    export_audio_model(model, fp32, (1, 192, 64))
    reference = run_audio(ort_session(fp32), calibration)
    kept = quantize_audio_model(fp32, out, calibration, reference, work=work)
    assert kept.other_error is not None and kept.margin is not None
    logits = run_audio(ort_session(out), calibration)
    np.testing.assert_array_equal(kept.logits, logits)  # the logits handed back are the file's
    got = centred_logit_error(reference, logits)
    assert got == pytest.approx(kept.error, rel=1e-6)  # the file kept is the one measured
    shared, plain = (
        (kept.error, kept.other_error)
        if kept.shared_block_ranges
        else (kept.other_error, kept.error)
    )
    assert kept.shared_block_ranges == (shared - plain <= kept.margin)
    graph = onnx.load(str(out)).graph
    assert concats_copy(graph) == kept.shared_block_ranges
    chained = all(len(n.input) == 2 for n in graph.node if n.op_type == "Concat")
    assert chained == kept.shared_block_ranges  # per-tensor ranges keep timm's Concats
    assert not list(work.iterdir())  # the other candidate and the intermediates are gone


def test_block_ranges_are_the_union_of_the_joined_tensors_ranges(tmp_path: Path) -> None:
    """a = relu(image), b = image * -0.5, pooled = maxpool(b), c = concat(a, pooled): a, b,
    pooled and c share one range, the union of theirs (a reaches 9, b goes down to -4.5:
    neither alone); y = image * 3 keeps its own."""
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 2, 4, 4])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    constants = [
        onnx.numpy_helper.from_array(np.array(v, dtype=np.float32), name)
        for name, v in (("minus_half", -0.5), ("three", 3.0))
    ]
    nodes = [
        helper.make_node("Relu", ["image"], ["a"]),
        helper.make_node("Mul", ["image", "minus_half"], ["b"]),
        helper.make_node("MaxPool", ["b"], ["pooled"], kernel_shape=[1, 1]),
        helper.make_node("Concat", ["a", "pooled"], ["c"], axis=1),
        helper.make_node("Mul", ["image", "three"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [image], [c, y], initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    images = np.random.default_rng(0).uniform(-2.0, 2.0, (5, 2, 4, 4)).astype(np.float32)
    images[2, 0, 0, 0], images[3, 1, 2, 2] = 9.0, -3.0
    overrides = block_range_overrides(path, images, work=tmp_path)
    assert set(overrides) == {"a", "b", "pooled", "c"}
    want = [{"rmin": np.float32(-4.5), "rmax": np.float32(9.0)}]
    assert all(v == want for v in overrides.values()), overrides
    assert not list(tmp_path.glob("*.ranges.onnx"))


def test_batchnorms_become_equal_depthwise_convolutions(
    calibration: np.ndarray, calibration_set: CalibrationImages, tmp_path: Path
) -> None:
    """The rewrite is exact in fp32: the same logits (to float rounding) with no
    BatchNormalization left; trained-like running statistics, so the affine is not the
    identity."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cal = calibration_set
    with compute_threads(1):
        model = demo_densenet("tiny", 6, seed=3, cal=cal, recipe=RECIPES["tiny"])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    variances = [m.running_var for m in norms if m.running_var is not None]
    assert len(variances) == len(norms)
    assert any(not torch.allclose(v, torch.ones_like(v)) for v in variances)
    fp32, pre, rewritten = (tmp_path / f"{n}.onnx" for n in ("fp32", "pre", "dw"))
    export_audio_model(model, fp32, (1, 192, 64))
    quant_pre_process(str(fp32), str(pre))
    before = sum(n.op_type == "BatchNormalization" for n in onnx.load(str(pre)).graph.node)
    assert before > 0  # the pre-activation norms pre-processing cannot fold
    assert batchnorm_as_depthwise_conv(pre, rewritten) == before
    graph = onnx.load(str(rewritten)).graph
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    assert not [i for i in graph.initializer if "running_" in i.name]
    want = run_audio(ort_session(fp32), calibration)
    got = run_audio(ort_session(rewritten), calibration)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_dynamic_int8_of_the_text_model(tmp_path: Path, tiny_bundle_int8: Path) -> None:
    # the tiny demo's trained-like text weights: a random BERT's logits are near ties, and
    # near ties say nothing about int8
    model = load_demo_checkpoints(demo_checkpoint_dir(tiny_bundle_int8)).text
    fp32, int8 = tmp_path / "t.onnx", tmp_path / "tq.onnx"
    export_text_model(model, fp32)
    quantize_text_dynamic(fp32, int8)
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
    sequences = [[2, *range(5, 5 + n), 3] for n in (1, 9, 30)]
    got = run_text(ort_session(int8), sequences, pad_id=1)
    want = run_text(ort_session(fp32), sequences, pad_id=1)
    assert got.shape == want.shape == (3, 6)
    assert not np.array_equal(got, want)  # int8, not fp32
    # int8 close to fp32, judged by margins: the int8 error measured on half of the
    # calibration texts bounds how far the other half can move; every decisive one agrees
    encoder = TextEncoder.from_file(tiny_bundle_int8 / "tokenizer.json", max_len=60)
    encoded = encoder.encode_batch(calibration_texts(SAMPLES, n_generated=60))
    texts = [list(e.input_ids[0]) for e in encoded if e is not None]
    measured, judged_texts = texts[::2], texts[1::2]
    for path in ("kernels", "reference"):
        session = ort_session(int8, reference=path == "reference")
        tolerance = logit_spreads(
            run_text(ort_session(fp32), measured, pad_id=1), run_text(session, measured, pad_id=1)
        ).max()
        judged = judge_logits(
            run_text(ort_session(fp32), judged_texts, pad_id=1),
            run_text(session, judged_texts, pad_id=1),
            tolerance=tolerance,
        )
        assert not judged.disagreements, (path, [d.describe() for d in judged.disagreements])
        assert judged.decisive, (path, judged.summary())  # not every text a near tie


def test_calibration_texts_are_transcripts_then_generated_sentences() -> None:
    texts = calibration_texts(SAMPLES, n_generated=12)
    assert len(texts) == 4 + 12
    assert "도와주세요. 여기 사람이 쓰러졌어요. 빨리 와주세요." in texts[:4]
