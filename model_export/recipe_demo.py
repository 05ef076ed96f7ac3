"""`python -m model_export demo --recipe recipes/NAME.json`: a manifest v2 bundle of that
recipe's architecture with seeded weights, marked untrained.

Today's system (recipes/emergency-voice.json) is built by the v1 demo (the same DenseNets and
KoBERT, the same weights for a seed) and its manifest then written as v2 carrying the recipe.
Any other recipe gets its PyTorch re-implementation (model_export.architectures), fitted
lightly so its outputs are not a near tie everywhere: BatchNorm statistics re-estimated on
the calibration windows, then a few AdamW steps of its last layer against seeded k-means
pseudo-labels of them. Its fitted
scalers (affine nodes left null in the recipe) are fitted on the same windows. None of this is
training: the verdicts mean nothing, and the manifest says `trained: false`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from alertfusion.manifest import MANIFEST_FILE, Manifest
from alertfusion.manifest_v2 import ManifestV2, from_v1, legacy_manifest
from alertfusion.recipe import schema as s
from alertfusion.recipe.v1 import legacy_parts
from model_export import architectures as arch
from model_export.errors import ExportError, ExportReason
from model_export.onnx_export import OPSET, compute_threads, quiet
from model_export.progress import Progress
from model_export.recipe_build import (
    PARITY_TOLERANCE,
    Built,
    assemble,
    calibration_windows,
    check_parity,
    finish_model,
    fitted_scalers,
    load_recipe,
    model_rows,
    onnx_shapes,
    producer_notes,
    run_onnx,
    verify_v2,
    with_scalers,
    write_manifest,
)

Size = Literal["full", "tiny"]
#: AdamW steps and learning rate of the light fit, and the rows it sees at most
FIT: dict[str, tuple[int, float, int]] = {"tiny": (30, 2e-2, 48), "full": (20, 1e-2, 16)}


def kmeans_labels(x: np.ndarray, k: int, *, seed: int, iterations: int = 20) -> np.ndarray:
    """Seeded k-means (k-means++ start) of standardised rows through a random projection."""
    rng = np.random.default_rng(seed)
    z = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    z = z @ rng.standard_normal((z.shape[1], 32)) / np.sqrt(z.shape[1])
    n = len(z)
    k = min(k, n)
    centres = [z[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min([((z - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = d2.sum()
        centres.append(z[rng.choice(n, p=d2 / total)] if total > 0 else z[rng.integers(n)])
    centre = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        labels = ((z[:, None] - centre[None]) ** 2).sum(axis=2).argmin(axis=1)
        for j in range(k):
            if (labels == j).any():
                centre[j] = z[labels == j].mean(axis=0)
    return labels


def _reestimate_batchnorm(model: nn.Module, inputs: list[torch.Tensor], batch: int = 8) -> None:
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
    model.train()
    with torch.no_grad():
        for i in range(0, len(inputs[0]), batch):
            model(*(x[i : i + batch] for x in inputs))


def light_fit(
    model: nn.Module, spec: s.ModelSpec, rows: dict[str, np.ndarray], *, seed: int, size: Size
) -> None:
    """BatchNorm statistics re-estimated on the rows, then a few AdamW steps of the last
    Linear layer against k-means pseudo-labels (module docstring), on its input computed once:
    the layers below stay as seeded, so the full-size networks are not run again per step."""
    steps, lr, limit = FIT[size]
    n = len(next(iter(rows.values())))
    flat = np.concatenate([rows[k].reshape(n, -1) for k in spec.inputs], axis=1)
    labels = kmeans_labels(flat.astype(np.float64), len(spec.labels), seed=seed)
    pick = np.unique(np.linspace(0, n - 1, min(limit, n)).round().astype(int))
    inputs = [torch.from_numpy(rows[k][pick]) for k in spec.inputs]
    _reestimate_batchnorm(model, inputs)
    model.eval()
    # the last Linear only: Adam's per-weight steps on a layer as wide as the infant-cry head
    # (800,000 inputs) would move its outputs by tens per step and saturate them
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        hook.remove()
    features, target = captured[0], torch.from_numpy(labels[pick])
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        out = head(features)
        if spec.output.kind == "sigmoid":
            loss = nn.functional.binary_cross_entropy_with_logits(out[:, 0], (target > 0).float())
        else:
            loss = nn.functional.cross_entropy(out, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def demo_model(
    recipe: s.Recipe, name: str, rows: dict[str, np.ndarray], *, size: Size, seed: int
) -> nn.Module:
    """The recipe's model `name` as described, seeded, lightly fitted."""
    torch.manual_seed(seed)
    spec = recipe.models[name]
    classes = len(spec.labels)
    model: nn.Module
    key = (recipe.name, name)
    if key == ("infant-cry", "cry"):
        model = arch.InfantCryNet(
            size, rows=(rows["mfcc"].shape[1], rows["mel"].shape[1]), frames=rows["mfcc"].shape[2]
        )
    elif key == ("dog-bark", "dog"):
        model = arch.DogBarkNet(size, classes=classes)
    elif key == ("speech-emotion", "svc"):
        x = torch.from_numpy(rows["features"]).double()
        mean, scale = x.mean(dim=0), x.std(dim=0) + 1e-3
        count = 16 if size == "tiny" else 64
        pick = np.linspace(0, len(x) - 1, min(count, len(x))).round().astype(int)
        support = ((x[pick] - mean) / scale).float()
        model = arch.KernelClassifier(support, mean.float(), scale.float(), classes)
    elif key == ("speaker-gender", "gender"):
        _, _, height, width = rows["mfcc"].shape
        model = arch.GenderCNN(size, rows=height, frames=width)
    else:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"no demo architecture for model {name!r} of recipe {recipe.name!r} (the demo knows "
            "the shipped recipes; bring a model of your own with `bundle --recipe --onnx`)",
        )
    light_fit(model, spec, rows, seed=seed, size=size)
    return model


def export_model(
    model: nn.Module, spec: s.ModelSpec, rows: dict[str, np.ndarray], path: Path
) -> None:
    names = list(spec.inputs)
    example = tuple(torch.from_numpy(rows[k][:2]) for k in names)
    with quiet(), torch.no_grad():
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=names,
            output_names=[spec.output.name],
            dynamic_axes={k: {0: "batch"} for k in [*names, spec.output.name]},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
            external_data=False,
        )


def torch_outputs(model: nn.Module, rows: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    n = len(rows[names[0]])
    with torch.no_grad():
        parts = [
            model(*(torch.from_numpy(rows[k][i : i + 8]) for k in names)).double().numpy()
            for i in range(0, n, 8)
        ]
    return np.concatenate(parts)


def build_recipe_demo(
    recipe_path: Path,
    out: Path,
    *,
    size: Size = "full",
    seed: int = 0,
    quantize: Literal["none", "int8"] = "none",
    calibration_audio: Path,
    threshold: float,
    fp32_fallback: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    checkpoints_out: Path | None = None,
) -> ManifestV2:
    progress = progress or Progress()
    recipe = load_recipe(recipe_path)
    if recipe.transcriber is not None:
        from model_export.stt_demo import build_offline_demo

        return build_offline_demo(
            recipe, out, size=size, seed=seed, quantize=quantize, threshold=threshold,
            calibration_audio=calibration_audio, fp32_fallback=fp32_fallback, force=force,
            progress=progress, checkpoints_out=checkpoints_out,
        )  # fmt: skip
    if legacy_parts(recipe) is not None:
        return _emergency_demo(
            recipe, out, size=size, seed=seed, quantize=quantize, threshold=threshold,
            calibration_audio=calibration_audio, fp32_fallback=fp32_fallback, force=force,
            progress=progress, checkpoints_out=checkpoints_out,
        )  # fmt: skip
    if any(m.source == "transcript" for m in recipe.models.values()):
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"recipe {recipe.name}: the demo has no text model for it (only today's system's)",
        )
    progress(f"calibration: windows of {calibration_audio} as recipe {recipe.name} cuts them")
    windows = calibration_windows(recipe, calibration_audio)
    scalers = fitted_scalers(recipe, windows)
    if scalers:
        progress(f"calibration: StandardScaler fitted for {', '.join(sorted(scalers))}")
        recipe = with_scalers(recipe, scalers)
    rows = model_rows(recipe, windows)

    def build(partial: Path, work: Path) -> ManifestV2:
        built: dict[str, Built] = {}
        with compute_threads(1 if size == "tiny" else 0):
            for name, feeds in rows.items():
                spec = recipe.models[name]
                progress(f"{name}: {size} {recipe.name} model, seed {seed}, light fit")
                model = demo_model(recipe, name, feeds, size=size, seed=seed)
                fp32 = work / f"{name}.fp32.onnx"
                export_model(model, spec, feeds, fp32)
                rng = np.random.default_rng(seed)
                noise = {k: rng.standard_normal((2, *v.shape[1:])).astype(np.float32)
                         for k, v in feeds.items()}  # fmt: skip
                parity = max(
                    check_parity(
                        name,
                        run_onnx(fp32, batch, spec.output.name),
                        torch_outputs(model, batch, list(spec.inputs)),
                        PARITY_TOLERANCE,
                    )
                    for batch in (feeds, noise)
                )
                progress(f"{name}: ONNX against PyTorch, max |difference| {parity:.2e}")
                built[name] = finish_model(
                    name, spec, fp32, feeds, parity, partial, int8=quantize == "int8",
                    threshold=threshold, fp32_fallback=fp32_fallback, progress=progress,
                )  # fmt: skip
        return write_manifest(
            recipe,
            built,
            partial,
            bundle_version=f"demo-{recipe.name}-{size}-seed{seed}-{quantize}",
            trained=False,
            description=(
                f"UNTRAINED demo bundle of recipe {recipe.name} ({size} size, seed {seed}): "
                "PyTorch re-implementations of the described models with seeded weights, "
                "lightly fitted to k-means pseudo-labels of the calibration windows. Verdicts "
                "are meaningless."
            ),
            producer=producer_notes({"torch": torch.__version__, "demo": "true"}),
        )

    return assemble(out, force=force, progress=progress, build=build)


def _emergency_demo(
    recipe: s.Recipe,
    out: Path,
    *,
    size: Size,
    seed: int,
    quantize: Literal["none", "int8"],
    threshold: float,
    calibration_audio: Path,
    fp32_fallback: bool,
    force: bool,
    progress: Progress,
    checkpoints_out: Path | None,
) -> ManifestV2:
    """Today's system: the v1 demo, then its manifest as v2 carrying `recipe`."""
    from model_export.demo import build_demo_bundle

    build_demo_bundle(
        out,
        size=size,
        quantize=quantize,
        seed=seed,
        calibration_audio=calibration_audio,
        checkpoints_out=checkpoints_out,
        force=force,
        threshold=threshold,
        fp32_fallback=fp32_fallback,
        progress=progress,
    )
    return upgrade_to_v2(Path(out), recipe, progress)


def upgrade_to_v2(directory: Path, recipe: s.Recipe, progress: Progress) -> ManifestV2:
    """Rewrite a v1 bundle's manifest as v2 with `recipe` (which must be today's system with
    that bundle's numbers), the model files' shapes read from their graphs, and verify it."""
    upgraded = emergency_v2(directory, recipe)
    upgraded.dump(directory / MANIFEST_FILE)
    for line in verify_v2(directory):
        progress(f"verify: {line}")
    return upgraded


def emergency_v2(directory: Path, recipe: s.Recipe) -> ManifestV2:
    """The v2 manifest of a v1 bundle of today's system with `recipe` (that system with that
    bundle's numbers), the model files' shapes read from their graphs."""
    v1 = Manifest.load(directory / MANIFEST_FILE)
    spec = from_v1(v1)
    models = {}
    for name, entry in spec.models.items():
        inputs, output = onnx_shapes(directory / entry.file, entry.output_names[0])
        models[name] = entry.model_copy(update={"input_shapes": inputs, "output_shape": output})
    try:
        upgraded = ManifestV2.model_validate(
            {
                **spec.model_dump(mode="json"),
                "recipe": recipe.model_dump(mode="json"),
                "models": {k: v.model_dump(mode="json") for k, v in models.items()},
            }
        )
    except ValueError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"manifest v2: {exc}") from exc
    if legacy_manifest(upgraded) is None:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"recipe {recipe.name} is not the system this bundle was built as",
        )
    return upgraded
