"""Today's system as a recipe: a v1 manifest mapped onto v2, and a v2 recipe recognised as
today's system (`legacy_view`), which the engine then serves on its optimised path.

`emergency_recipe` writes the feature image of docs/REFERENCE_MODEL.md as a graph (S, M', C'
resized and stacked), the two DenseNets and KoBERT as models, and the gate + L2-normalised
fusion + "the most alarming window" as the decision. A v2 recipe is today's system exactly
when `emergency_recipe` of the numbers read back from it gives the same recipe: then the
optimised path (alertfusion.features, alertfusion.fusion) computes what the graph describes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alertfusion import limits
from alertfusion.recipe import schema as s

if TYPE_CHECKING:
    from alertfusion.manifest import AudioPreprocessing, Labels, Manifest

RECIPE_NAME = "emergency-voice"
IMAGE = "image"
#: the three models of today's system, in the v1 manifest's order
GATE_MODEL, AUDIO_MODEL, TEXT_MODEL = "audio_binary", "audio_multiclass", "text"
DESCRIPTION = (
    "Emergency detection from short Korean recordings: a DenseNet-121 on the early-fusion "
    "spectrogram image (|STFT|, z-scored mel power, z-scored MFCC, each resized to 64x64, "
    "stacked) gated by a binary DenseNet, fused with KoBERT on the transcript "
    "(docs/REFERENCE_MODEL.md)."
)


def emergency_features(cfg: AudioPreprocessing) -> dict[str, s.Node]:
    """The feature image of `cfg` as a graph; its node `image` is (3H, W) stacked or
    (3, H, W) as channels."""
    stft = {
        "input": "waveform",
        "n_fft": cfg.n_fft,
        "hop_length": cfg.hop_length,
        "window": cfg.window,
        "center": cfg.center,
        "pad_mode": cfg.pad_mode,
    }
    db = {"kind": "power", "ref": cfg.db_ref, "amin": cfg.db_amin, "top_db": cfg.db_top}
    nodes: dict[str, s.Node] = {
        "waveform": s.Waveform(op="waveform"),
        "stft": s.Stft(op="stft", power=1.0, **stft),
        "power": s.Stft(op="stft", power=cfg.mel_power, **stft),
        "mel": s.Mel(
            op="mel",
            input="power",
            n_mels=cfg.n_mels,
            fmin=cfg.mel_fmin,
            fmax=cfg.mel_fmax,
            scale="htk" if cfg.mel_htk else "slaney",
            norm=cfg.mel_norm,
        ),
        "mel_db": s.Db(op="db", input="mel", **db),
        "mfcc": s.Mfcc(op="mfcc", input="mel_db", n_mfcc=cfg.n_mfcc),
        "mel_z": s.Zscore(op="zscore", input="mel", eps=cfg.zscore_eps),
    }
    mel_panel_input = "mel_z"
    if cfg.mel_transform == "zscore_db":
        nodes["mel_z_db"] = s.Db(op="db", input="mel_z", **db)
        mel_panel_input = "mel_z_db"
    nodes["mfcc_z"] = s.Zscore(op="zscore", input="mfcc", eps=cfg.zscore_eps)
    for panel, source in (("s", "stft"), ("mel", mel_panel_input), ("mfcc", "mfcc_z")):
        nodes[f"{panel}_panel"] = s.Resize(op="resize", input=source, size=cfg.panel_size)
    panels = ["s_panel", "mel_panel", "mfcc_panel"]
    nodes[IMAGE] = (
        s.Concat(op="concat", inputs=panels, axis=0)
        if cfg.layout == "stacked"
        else s.Stack(op="stack", inputs=panels, axis=0)
    )
    return nodes


def emergency_recipe(
    cfg: AudioPreprocessing,
    labels: Labels,
    *,
    gate: bool = True,
    image_input: str = IMAGE,
    output: str = "logits",
    min_tail_seconds: float = limits.MIN_WINDOW_SECONDS,
) -> s.Recipe:
    """Today's system with `cfg`'s features, `labels`, the binary gate on or off."""
    classes = [
        s.Label(name=name, display=ko)
        for name, ko in zip(labels.classes, labels.classes_ko, strict=True)
    ]
    regular = labels.classes[labels.regular_index]
    image = {image_input: s.ModelInput(node=IMAGE, layout="NCHW")}
    logits = s.ModelOutput(name=output, kind="logits")
    return s.Recipe(
        name=RECIPE_NAME,
        description=DESCRIPTION,
        sample_rate=cfg.sample_rate,
        resample_quality=cfg.resample_quality,
        windows=s.Windows(
            mode="fixed",
            seconds=cfg.window_seconds,
            tail="score",
            min_tail_seconds=min_tail_seconds,
        ),
        features=emergency_features(cfg),
        models={
            GATE_MODEL: s.ModelSpec(
                inputs=image, output=logits, labels=[s.Label(name=b) for b in labels.binary]
            ),
            AUDIO_MODEL: s.ModelSpec(inputs=image, output=logits, labels=classes),
            TEXT_MODEL: s.ModelSpec(source="transcript", output=logits, labels=classes),
        }
        if gate
        else {
            AUDIO_MODEL: s.ModelSpec(inputs=image, output=logits, labels=classes),
            TEXT_MODEL: s.ModelSpec(source="transcript", output=logits, labels=classes),
        },
        decision=s.Decision(
            gate=s.Gate(model=GATE_MODEL, label=labels.binary[labels.regular_index])
            if gate
            else None,
            fusion=s.Fusion(method="l2norm_softmax", models=[AUDIO_MODEL, TEXT_MODEL]),
            aggregate="max_alert",
            alert_labels=[c for c in labels.classes if c != regular],
        ),
    )


def recipe_from_v1(manifest: Manifest) -> s.Recipe:
    """A v1 manifest's system as a recipe (the gate as the manifest's default)."""
    return emergency_recipe(
        manifest.audio,
        manifest.labels,
        gate=manifest.fusion.gate == "binary",
        image_input=manifest.models.audio_multiclass.input_names[0],
        output=manifest.models.audio_multiclass.output_names[0],
    )


def _read_cfg(recipe: s.Recipe) -> AudioPreprocessing | None:
    """The AudioPreprocessing `emergency_features` would have made this recipe's graph from,
    read off its nodes; None where the graph does not have their names and ops."""
    from alertfusion.manifest import AudioPreprocessing

    f = recipe.features
    stft, power, mel = f.get("stft"), f.get("power"), f.get("mel")
    db, mfcc, mel_z, panel = f.get("mel_db"), f.get("mfcc"), f.get("mel_z"), f.get("s_panel")
    image = f.get(IMAGE)
    if not (
        isinstance(stft, s.Stft)
        and isinstance(power, s.Stft)
        and isinstance(mel, s.Mel)
        and isinstance(db, s.Db)
        and isinstance(mfcc, s.Mfcc)
        and isinstance(mel_z, s.Zscore)
        and isinstance(panel, s.Resize)
        and isinstance(image, s.Concat | s.Stack)
        and isinstance(db.ref, float | int)
        and db.top_db is not None
        and mel_z.eps is not None
        and recipe.windows.seconds is not None
        and stft.window == "hann"
    ):
        return None
    try:
        return AudioPreprocessing(
            sample_rate=recipe.sample_rate,
            window_seconds=recipe.windows.seconds,
            n_fft=stft.n_fft,
            hop_length=stft.hop_length,
            center=stft.center,
            pad_mode="constant",
            n_mels=mel.n_mels,
            mel_fmin=mel.fmin,
            mel_fmax=mel.fmax,
            mel_norm="slaney",
            mel_htk=mel.scale == "htk",
            mel_power=power.power,
            n_mfcc=mfcc.n_mfcc,
            db_ref=float(db.ref),
            db_amin=db.amin,
            db_top=db.top_db,
            zscore_eps=mel_z.eps,
            mel_transform="zscore_db" if "mel_z_db" in f else "zscore",
            panel_size=panel.size,
            layout="stacked" if isinstance(image, s.Concat) else "channels",
        )
    except ValueError:
        return None


def without_transcribers(recipe: s.Recipe) -> s.Recipe:
    """`recipe` without its transcribe models and the feature nodes only they read, its
    transcript from Amazon Transcribe: what classifies. Today's system with a speech-to-text
    model of its own is still today's system (the engine's optimised path transcribes first)."""
    if recipe.transcriber is None:
        return recipe
    from alertfusion.recipe.graph import FeatureGraph

    models = {n: m for n, m in recipe.models.items() if m.task == "classify"}
    wanted = {f.node for m in models.values() for f in m.inputs.values()}
    needed = set(FeatureGraph(recipe).needed(wanted))
    features = {n: v for n, v in recipe.features.items() if n in needed}
    return recipe.model_copy(
        update={"models": models, "features": features, "transcript_source": "aws_transcribe"}
    )


def legacy_parts(recipe: s.Recipe) -> tuple[AudioPreprocessing, Labels] | None:
    """(features, labels) of today's system when `recipe` is exactly it (see the module
    docstring), whatever its `text_overrides_gate` and its speech-to-text model; None
    otherwise."""
    from alertfusion.manifest import Labels

    recipe = without_transcribers(recipe)
    cfg = _read_cfg(recipe)
    gate = recipe.decision.gate
    if cfg is None or gate is None or set(recipe.models) != {GATE_MODEL, AUDIO_MODEL, TEXT_MODEL}:
        return None
    classes = recipe.models[AUDIO_MODEL].labels
    binary = recipe.models[GATE_MODEL].label_names
    names = [c.name for c in classes]
    if gate.label not in names or gate.label not in binary:
        return None
    try:
        labels = Labels(
            classes=names,
            classes_ko=[c.shown for c in classes],
            binary=binary,
            regular_index=names.index(gate.label),
        )
    except ValueError:
        return None
    spec = recipe.models[AUDIO_MODEL]
    canonical = emergency_recipe(
        cfg,
        labels,
        image_input=next(iter(spec.inputs)),
        output=spec.output.name,
    )
    ours = recipe.model_copy(
        update={
            "name": RECIPE_NAME,
            "description": DESCRIPTION,
            "notes": [],
            "decision": recipe.decision.model_copy(update={"text_overrides_gate": False}),
        }
    )
    # the gate's own labels carry no display names in v1: compare them by name
    gate_spec = recipe.models[GATE_MODEL]
    bare = gate_spec.model_copy(update={"labels": [s.Label(name=n) for n in binary]})
    ours = ours.model_copy(update={"models": {**ours.models, GATE_MODEL: bare}})
    return (cfg, labels) if ours == canonical else None
