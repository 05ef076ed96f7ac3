"""`model_export demo --recipe` builds every shipped recipe (tiny), `bundle --recipe --onnx`
packages ONNX files made elsewhere (here: by PyTorch and by onnx.helper) against a parity file,
and each bundle classifies the samples from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alertfusion.bundle import load_bundle
from alertfusion.cli import EXIT_OK
from alertfusion.cli import main as alertfusion_main
from model_export.cli import EXIT_USER_ERROR
from model_export.cli import main as export_main
from tests.conftest import SAMPLES
from tests.recipe_bundles import (
    GENERIC_RECIPES,
    RECIPES,
    identity_scalers,
    recipe_dict,
    write_bundle,
)

pytestmark = [pytest.mark.export, pytest.mark.slow]


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demos")
    out = {}
    for name in GENERIC_RECIPES:
        code = export_main(["demo", "--recipe", str(RECIPES / f"{name}.json"), "--size", "tiny",
                            "--out", str(root / name)])  # fmt: skip
        assert code == 0, name
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", GENERIC_RECIPES)
def test_demo_bundles_build_and_classify(demos: dict[str, Path], name: str, capsys: Any) -> None:
    bundle = load_bundle(demos[name])
    assert bundle.spec.trained is False and bundle.spec.recipe.name == name
    assert bundle.spec.golden is not None
    for entry in bundle.spec.models.values():
        assert entry.parity_max_abs_diff is not None and entry.parity_max_abs_diff <= 1e-4
    capsys.readouterr()
    files = [str(p) for p in sorted(SAMPLES.glob("*.wav"))]
    assert alertfusion_main(["classify", *files, "--bundle", str(demos[name]), "--json",
                             "--quiet"]) == EXIT_OK  # fmt: skip
    results = json.loads(capsys.readouterr().out)
    assert len(results) == len(files)
    assert all(r["result"]["model"]["recipe"] == name for r in results)
    assert alertfusion_main(["selfcheck", "--bundle", str(demos[name])]) == EXIT_OK
    assert export_main(["verify", str(demos[name])]) == 0


def test_demo_fits_the_infant_cry_scalers(demos: dict[str, Path]) -> None:
    recipe = load_bundle(demos["infant-cry"]).spec.recipe
    for node in ("mfcc_scaled", "mel_scaled"):
        affine = recipe.features[node]
        assert affine.op == "affine"
        assert isinstance(affine.mean, list) and len(affine.mean) == 188
        assert isinstance(affine.scale, list) and min(affine.scale) > 0


def test_emergency_demo_is_v2_and_served_on_the_optimised_path(tmp_path: Path) -> None:
    out = tmp_path / "emergency"
    code = export_main(["demo", "--recipe", str(RECIPES / "emergency-voice.json"), "--size",
                        "tiny", "--quantize", "none", "--out", str(out)])  # fmt: skip
    assert code == 0
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["schema_version"] == 2 and raw["recipe"]["name"] == "emergency-voice"
    bundle = load_bundle(out)
    assert bundle.legacy is not None and bundle.schema_version == 2
    assert alertfusion_main(["classify", str(SAMPLES / "ko-help-16k.wav"), "--bundle", str(out),
                             "--text", "도와주세요", "--quiet"]) == EXIT_OK  # fmt: skip


# ------------------------------------------------------------------------- bundle --onnx


class _GenderLike(torch.nn.Module):
    """A small model with the speaker-gender recipe's input and output: (N, 1, 128, 301) ->
    one sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.fc = torch.nn.Linear(2, 1)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(self.conv(mfcc).mean(dim=(2, 3))))


def _rows(name: str, n: int = 6) -> dict[str, np.ndarray]:
    """The recipe's own input rows for the sample recordings (what `features` writes)."""
    from model_export.recipe_build import calibration_windows, load_recipe, model_rows

    recipe = load_recipe(RECIPES / f"{name}.json")
    rows = model_rows(recipe, calibration_windows(recipe, SAMPLES))
    return {k: v[:n] for k, v in next(iter(rows.values())).items()}


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        model, (example,), str(path), input_names=["mfcc"], output_names=["probability"],
        dynamic_axes={"mfcc": {0: "batch"}, "probability": {0: "batch"}}, opset_version=17,
        dynamo=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def gender_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("onnx")
    model = _GenderLike().eval()
    rows = _rows("speaker-gender")["mfcc"]
    path = root / "gender.onnx"
    _export(model, torch.from_numpy(rows[:2]), path)
    with torch.no_grad():
        reference = model(torch.from_numpy(rows)).numpy()
    parity = root / "parity.npz"
    np.savez(parity, **{"gender/mfcc": rows, "gender/probability": reference})
    return path, parity


def _bundle(args: list[str], out: Path) -> int:
    return export_main(["bundle", "--recipe", str(RECIPES / "speaker-gender.json"), *args,
                        "--out", str(out)])  # fmt: skip


def test_bundle_packages_an_onnx_file_that_matches_its_parity(
    gender_onnx: tuple[Path, Path], tmp_path: Path
) -> None:
    model, parity = gender_onnx
    out = tmp_path / "g"
    assert _bundle(["--onnx", f"gender={model}", "--parity", str(parity)], out) == 0
    bundle = load_bundle(out)
    entry = bundle.spec.models["gender"]
    assert bundle.spec.trained is True and entry.quantization == "none"
    assert entry.parity_max_abs_diff is not None and entry.parity_max_abs_diff <= 1e-4
    assert entry.input_shapes == {"mfcc": [None, 1, 128, 301]} and entry.output_shape[-1] == 1
    assert alertfusion_main(["classify", str(SAMPLES / "ko-help-16k.wav"), "--bundle", str(out),
                             "--quiet"]) == EXIT_OK  # fmt: skip


def test_bundle_int8_is_judged_by_margins(gender_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    model, parity = gender_onnx
    out = tmp_path / "g8"
    code = _bundle(["--onnx", f"gender={model}", "--parity", str(parity), "--quantize", "int8",
                    "--calibration-audio", str(SAMPLES), "--threshold", "0.5"], out)  # fmt: skip
    assert code == 0
    entry = load_bundle(out).spec.models["gender"]
    assert entry.quantization == "int8_static_qdq" and entry.quantization_report is not None
    assert entry.quantization_report.max_logit_spread is not None
    assert alertfusion_main(["selfcheck", "--bundle", str(out)]) == EXIT_OK


def _parity_off(parity: Path, tmp_path: Path) -> Path:
    with np.load(parity) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["gender/probability"] = arrays["gender/probability"] + 1e-3
    out = tmp_path / "off.npz"
    np.savez(out, **arrays)
    return out


def test_bundle_refusals_name_what_is_wrong(
    gender_onnx: tuple[Path, Path], tmp_path: Path, capsys: Any
) -> None:
    model, parity = gender_onnx
    cases: dict[str, tuple[list[str], str]] = {
        "a parity file that disagrees": (
            ["--onnx", f"gender={model}", "--parity", str(_parity_off(parity, tmp_path))],
            "PARITY_FAILED",
        ),
        "no --onnx for a model": (["--parity", str(parity)], "--onnx"),
        "a model the recipe does not have": (
            ["--onnx", f"gender={model}", "--onnx", f"other={model}", "--parity", str(parity)],
            "other",
        ),
        "checkpoint flags with --recipe": (
            ["--onnx", f"gender={model}", "--parity", str(parity), "--text", str(model)],
            "--text",
        ),
    }
    for case, (args, word) in cases.items():
        capsys.readouterr()
        out = tmp_path / case.replace(" ", "_")
        assert _bundle(args, out) == EXIT_USER_ERROR, case
        assert word in capsys.readouterr().err, case
        assert not out.exists(), case


def test_bundle_refuses_a_file_whose_inputs_are_not_the_recipes(
    tmp_path: Path, capsys: Any
) -> None:
    """An onnx.helper model of the dog-bark recipe offered as the speaker-gender model."""
    dog = write_bundle(identity_scalers(recipe_dict("dog-bark")), tmp_path / "dog")
    parity = tmp_path / "p.npz"
    arrays: dict[str, np.ndarray] = {
        "gender/mfcc": np.zeros((2, 1, 128, 301), np.float32),
        "gender/probability": np.zeros((2, 1)),
    }
    np.savez(parity, **arrays)  # type: ignore[arg-type]  # numpy's stub: **arrays
    assert _bundle(["--onnx", f"gender={dog / 'dog.onnx'}", "--parity", str(parity)],
                   tmp_path / "x") == EXIT_USER_ERROR  # fmt: skip
    assert "CHECKPOINT_MISMATCH" in capsys.readouterr().err


def test_bundle_with_scalers_from_files(tmp_path: Path) -> None:
    """infant-cry packaged from an onnx.helper model: its scalers come from --scaler files
    (StandardScaler's mean_ and scale_) and land in the manifest's recipe."""
    made = write_bundle(identity_scalers(recipe_dict("infant-cry")), tmp_path / "made")
    with np.load(made / "golden.npz") as golden:
        parity = tmp_path / "p.npz"
        np.savez(parity, **{"cry/mfcc": golden["cry/mfcc"], "cry/mel": golden["cry/mel"],
                            "cry/probabilities": golden["cry/fp32"]})  # fmt: skip
    scalers = []
    for node, rows in (("mfcc_scaled", 13), ("mel_scaled", 128)):
        path = tmp_path / f"{node}.npz"
        np.savez(path, mean=np.zeros(188) + rows, scale=np.ones(188) * 2.0)
        scalers += ["--scaler", f"{node}={path}"]
    out = tmp_path / "cry"
    code = export_main(["bundle", "--recipe", str(RECIPES / "infant-cry.json"), "--onnx",
                        f"cry={made / 'cry.onnx'}", "--parity", str(parity), *scalers,
                        "--out", str(out)])  # fmt: skip
    assert code == 0
    recipe = load_bundle(out).spec.recipe
    assert recipe.features["mel_scaled"].mean == [128.0] * 188  # type: ignore[union-attr]
    missing = export_main(["bundle", "--recipe", str(RECIPES / "infant-cry.json"), "--onnx",
                           f"cry={made / 'cry.onnx'}", "--parity", str(parity),
                           "--out", str(tmp_path / "none")])  # fmt: skip
    assert missing == EXIT_USER_ERROR
