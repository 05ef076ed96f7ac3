"""Strict loading (and writing) of checkpoints in the original training formats.

* DenseNet: `torch.save({"model_state_dict": wrapper.state_dict()})`, the network under the
  wrapper's `.model` (keys `model.features...`, `model.classifier.0.*`). Other top-level
  entries a training loop saves (optimizer state, epoch, ...) are ignored.
* KoBERT: a plain state dict (`bert.*`, `classifier.weight/bias`).
* DeepSpeech2 (model_export.ctc): a plain state dict of `ctc.DeepSpeech2` (`conv.*`,
  `rnns.N.*`, `norm.*`, `fc.*`); its sizes are read from the shapes.

Files are read with `torch.load(weights_only=True)`: nothing but tensors and plain containers
is ever unpickled. Any missing, unexpected or mis-shaped key is a CHECKPOINT_MISMATCH that
names the keys; an embedding that disagrees with the tokenizer is a VOCAB_MISMATCH.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_export.ctc import DeepSpeech2, conv_bins
from model_export.densenet import CheckpointWrapper, DenseNet121, Size, densenet_config
from model_export.errors import ExportError, ExportReason
from model_export.kobert import KoBertClassifier, kobert_config

DENSENET_STATE_KEY = "model_state_dict"
DENSENET_PREFIX = "model."
DENSENET_CLASSIFIER_KEY = "classifier.0.weight"
KOBERT_EMBEDDING_KEY = "bert.embeddings.word_embeddings.weight"
KOBERT_CLASSIFIER_KEY = "classifier.weight"
# transformers < 4.31 saved this buffer; it only holds arange(max_positions), so a checkpoint
# that carries it (with exactly that content) is the same model.
KOBERT_LEGACY_POSITION_IDS = "bert.embeddings.position_ids"

_SHOW = 5  # keys named per category in a mismatch message
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


def read_checkpoint(path: Path, *, what: str) -> Any:
    """`torch.load(path, weights_only=True)` with every failure as CHECKPOINT_UNREADABLE."""
    path = Path(path)
    if not path.exists():
        raise ExportError(ExportReason.CHECKPOINT_UNREADABLE, f"{what} {path} does not exist")
    if not path.is_file():
        raise ExportError(ExportReason.CHECKPOINT_UNREADABLE, f"{what} {path} is not a file")
    with path.open("rb") as fh:
        head = fh.read(4)
    if len(head) < 2 or (head != _ZIP_MAGIC and head[0] != _PICKLE_PROTO):
        raise ExportError(
            ExportReason.CHECKPOINT_UNREADABLE,
            f"{what} {path} is not a PyTorch checkpoint (neither a torch.save zip archive "
            "nor a legacy torch pickle)",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ExportError(
            ExportReason.CHECKPOINT_UNREADABLE,
            f"{what} {path} holds objects other than tensors and plain containers, or is "
            f"corrupt; it is only ever loaded with weights_only=True ({_first_line(exc)})",
        ) from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/KeyError/... for bad bytes
        raise ExportError(
            ExportReason.CHECKPOINT_UNREADABLE,
            f"{what} {path} cannot be read as a PyTorch checkpoint (truncated or corrupt?): "
            f"{type(exc).__name__}: {_first_line(exc)}",
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _as_state_dict(obj: Any, *, what: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path} holds a {type(obj).__name__}, not a state dict",
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path} is not a state dict: {len(bad)} entries are not named tensors "
            f"({', '.join(bad[:_SHOW])})",
        )
    return dict(obj)


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def compare_state_dicts(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, torch.Tensor],
    *,
    prefix: str = "",
) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mis-shaped) keys of `found` against `expected`, as they appear
    in the file (with `prefix`); mis-shaped entries read `key: checkpoint [..] vs expected [..]`."""
    missing = sorted(prefix + k for k in expected.keys() - found.keys())
    unexpected = sorted(prefix + k for k in found.keys() - expected.keys())
    misshaped = sorted(
        f"{prefix}{k}: checkpoint {_shape(found[k])} vs expected {_shape(expected[k])}"
        for k in expected.keys() & found.keys()
        if found[k].shape != expected[k].shape
    )
    return missing, unexpected, misshaped


def _raise_if_mismatch(
    what: str,
    path: Path,
    arch: str,
    missing: list[str],
    unexpected: list[str],
    misshaped: list[str],
) -> None:
    if not (missing or unexpected or misshaped):
        return
    parts = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", misshaped),
    ):
        if keys:
            more = f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
            noun = "key" if len(keys) == 1 else "keys"
            parts.append(f"{len(keys)} {label} {noun} ({', '.join(keys[:_SHOW])}{more})")
    raise ExportError(
        ExportReason.CHECKPOINT_MISMATCH,
        f"{what} {path} does not match {arch}: " + "; ".join(parts),
    )


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        model.load_state_dict(dict(state), strict=True)
    model.eval()


def densenet_state_from_file(obj: Any, *, what: str, path: Path) -> dict[str, torch.Tensor]:
    """The DenseNet's own state dict (without the wrapper's `model.` prefix) from a loaded file."""
    if not isinstance(obj, Mapping) or DENSENET_STATE_KEY not in obj:
        keys = ", ".join(str(k) for k in list(obj)[:_SHOW]) if isinstance(obj, Mapping) else ""
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path} is not a DenseNet training checkpoint: expected a dict with "
            f"'{DENSENET_STATE_KEY}'" + (f", found keys: {keys}" if keys else ""),
        )
    state = _as_state_dict(obj[DENSENET_STATE_KEY], what=what, path=path)
    unprefixed = sorted(k for k in state if not k.startswith(DENSENET_PREFIX))
    if unprefixed:
        more = f", ... ({len(unprefixed) - _SHOW} more)" if len(unprefixed) > _SHOW else ""
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path}: {len(unprefixed)} keys of '{DENSENET_STATE_KEY}' lack the "
            f"wrapper's '{DENSENET_PREFIX}' prefix ({', '.join(unprefixed[:_SHOW])}{more})",
        )
    return {k[len(DENSENET_PREFIX) :]: v for k, v in state.items()}


def load_densenet_checkpoint(
    path: Path,
    *,
    num_classes: int,
    size: Size = "full",
    in_chans: int = 1,
    what: str = "DenseNet checkpoint",
) -> DenseNet121:
    """Build DenseNet-121 (`size`) and load an original-format checkpoint into it strictly.

    The class count read from `model.classifier.0.weight` must equal `num_classes`.
    """
    path = Path(path)
    state = densenet_state_from_file(read_checkpoint(path, what=what), what=what, path=path)
    classifier = state.get(DENSENET_CLASSIFIER_KEY)
    if classifier is not None and classifier.ndim == 2 and classifier.shape[0] != num_classes:
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path} has {classifier.shape[0]} classes "
            f"({DENSENET_PREFIX}{DENSENET_CLASSIFIER_KEY} is {_shape(classifier)}); "
            f"expected {num_classes}",
        )
    config = densenet_config(size, num_classes=num_classes, in_chans=in_chans)
    model = DenseNet121(config)
    arch = (
        f"{'DenseNet-121' if size == 'full' else 'tiny DenseNet'} "
        f"(in_chans={in_chans}, {num_classes} classes)"
    )
    _raise_if_mismatch(
        what, path, arch, *compare_state_dicts(model.state_dict(), state, prefix=DENSENET_PREFIX)
    )
    _load_strict(model, state)
    return model


def load_kobert_checkpoint(
    path: Path,
    *,
    vocab_size: int,
    size: Size = "full",
    num_classes: int = 6,
    what: str = "KoBERT checkpoint",
) -> KoBertClassifier:
    """Build the KoBERT classifier (`size`) and load a plain state dict into it strictly.

    `vocab_size` is the tokenizer's; an embedding of another size is a VOCAB_MISMATCH.
    """
    path = Path(path)
    state = _as_state_dict(read_checkpoint(path, what=what), what=what, path=path)
    embedding = state.get(KOBERT_EMBEDDING_KEY)
    if embedding is not None and embedding.ndim == 2 and embedding.shape[0] != vocab_size:
        raise ExportError(
            ExportReason.VOCAB_MISMATCH,
            f"the tokenizer has {vocab_size} entries but {what} {path} has "
            f"{embedding.shape[0]} rows in {KOBERT_EMBEDDING_KEY}",
        )
    classifier = state.get(KOBERT_CLASSIFIER_KEY)
    if classifier is not None and classifier.ndim == 2 and classifier.shape[0] != num_classes:
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path} has {classifier.shape[0]} classes ({KOBERT_CLASSIFIER_KEY} is "
            f"{_shape(classifier)}); expected {num_classes}",
        )
    model = KoBertClassifier(kobert_config(size, vocab_size=vocab_size), num_classes=num_classes)
    _drop_legacy_position_ids(state, model, what=what, path=path)
    arch = f"{'KoBERT' if size == 'full' else 'tiny KoBERT'} ({num_classes} classes)"
    _raise_if_mismatch(what, path, arch, *compare_state_dicts(model.state_dict(), state))
    _load_strict(model, state)
    return model


#: the state dict entries the DeepSpeech2 sizes are read from
CTC_CONV_KEY = "conv.0.weight"
CTC_FC_KEY = "fc.weight"


def _ctc_rnn_key(layer: int) -> str:
    return f"rnns.{layer}.weight_ih_l0"


def load_ctc_checkpoint(
    path: Path, *, bins: int, what: str = "DeepSpeech2 checkpoint"
) -> DeepSpeech2:
    """Build `ctc.DeepSpeech2` with the sizes a state dict's shapes give (convolution
    channels, LSTM hidden units and layers, output symbols) and load the file into it strictly;
    CHECKPOINT_MISMATCH when its first LSTM does not read the features `bins` frequency rows
    give after the convolutions."""
    path = Path(path)
    state = _as_state_dict(read_checkpoint(path, what=what), what=what, path=path)
    needed = [CTC_CONV_KEY, CTC_FC_KEY, _ctc_rnn_key(0)]
    absent = [k for k in needed if k not in state or state[k].ndim < 2]
    if absent:
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path} is not a model_export.ctc.DeepSpeech2 state dict: no "
            f"{', '.join(absent)} (found keys: {', '.join(list(state)[:_SHOW])})",
        )
    channels = state[CTC_CONV_KEY].shape[0]
    symbols, hidden = state[CTC_FC_KEY].shape[:2]
    layers = 0
    while _ctc_rnn_key(layers) in state:
        layers += 1
    width = state[_ctc_rnn_key(0)].shape[1]
    if width != channels * conv_bins(bins):
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path}: its first LSTM reads {width} features per frame; the recipe's "
            f"{bins} frequency rows give {channels} x {conv_bins(bins)} = "
            f"{channels * conv_bins(bins)} after the convolutions (another front end?)",
        )
    model = DeepSpeech2(symbols, bins=bins, size=(channels, hidden, layers))
    arch = f"DeepSpeech2 ({channels} channels, {layers} x {hidden} LSTM, {symbols} symbols)"
    _raise_if_mismatch(what, path, arch, *compare_state_dicts(model.state_dict(), state))
    _load_strict(model, state)
    return model


def _drop_legacy_position_ids(
    state: dict[str, torch.Tensor], model: KoBertClassifier, *, what: str, path: Path
) -> None:
    ids = state.get(KOBERT_LEGACY_POSITION_IDS)
    if ids is None:
        return
    n = model.config.max_position_embeddings
    if ids.shape != (1, n) or not torch.equal(ids.long(), torch.arange(n).unsqueeze(0)):
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{what} {path}: {KOBERT_LEGACY_POSITION_IDS} is not arange({n})",
        )
    del state[KOBERT_LEGACY_POSITION_IDS]


def save_densenet_checkpoint(model: DenseNet121, path: Path) -> None:
    """Write `model` exactly as the training code did (wrapper `.model`, `model_state_dict`)."""
    wrapper = CheckpointWrapper(model)
    torch.save({DENSENET_STATE_KEY: wrapper.state_dict()}, Path(path))


def save_kobert_checkpoint(model: KoBertClassifier, path: Path) -> None:
    """Write `model` as a plain state dict, like `torch.save(model.state_dict())`."""
    torch.save(model.state_dict(), Path(path))
