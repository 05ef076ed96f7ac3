"""The Whisper speech-to-text family: a WhisperConfig-built model (transformers, no download)
exported as two ONNX graphs, greedy decoding with a key/value cache, token-exact parity.

* `encoder`: log-mel input_features (1, 80, 3000) -> each decoder layer's cross-attention keys
  and values (computed once per 30 s chunk), `cross_k_{i}`, `cross_v_{i}` (1, heads, 1500,
  head_dim).
* `decoder`: input_ids (1, n) with the self-attention cache of the tokens before them,
  `self_k_{i}` / `self_v_{i}` (1, heads, past, head_dim; past may be 0), and the cross keys
  and values -> logits (1, n, vocab) and the cache extended by the n tokens.

The decoder step is written out from the HF model's own weights (embeddings, the layers'
projections and norms, the output projection), so the exported graph is plain tensors;
parity is judged against HF's model run without any cache: greedy decoding of the ONNX pair
(alertfusion.stt_whisper, numpy) must give exactly the token ids of a greedy loop over
`WhisperForConditionalGeneration` itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from model_export.errors import ExportError, ExportReason

if TYPE_CHECKING:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

Size = Literal["full", "tiny"]
#: the special tokens a Whisper tokenizer must have (Korean transcription, no timestamps)
SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|ko|>", "<|transcribe|>",
            "<|notimestamps|>")  # fmt: skip
PROMPT = ("<|startoftranscript|>", "<|ko|>", "<|transcribe|>", "<|notimestamps|>")
END = "<|endoftext|>"
N_MELS = 80
N_FRAMES = 3000


def whisper_config(size: Size, vocab_size: int) -> WhisperConfig:
    """Whisper-tiny's shapes (full) or a few-layer miniature (tiny) for `vocab_size` tokens."""
    from transformers import WhisperConfig

    d, layers, heads, ffn = (384, 4, 6, 1536) if size == "full" else (64, 2, 2, 128)
    # eager attention: plain matmuls in the exported encoder (WhisperConfig takes it as a
    # keyword of PretrainedConfig)
    extra: dict[str, Any] = {"attn_implementation": "eager"}
    return WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=N_MELS, d_model=d, encoder_layers=layers,
        decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, max_source_positions=1500,
        max_target_positions=448, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        decoder_start_token_id=1, **extra,
    )  # fmt: skip


def demo_tokenizer(size: Size, path: Path) -> dict[str, int]:
    """A byte-level BPE (`tokenizers`) learnt from the seeded Korean corpus, Whisper's special
    tokens first (ids 0-4); written as tokenizer.json. Returns the special tokens' ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from model_export.korean_corpus import training_corpus

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000 if size == "full" else 300,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(2000, seed=0, rich=False), trainer)
    tokenizer.save(str(path))
    return {t: token_id(tokenizer, t) for t in SPECIALS}


def token_id(tokenizer: Any, token: str) -> int:
    """The id of `token` (TOKENIZER_INVALID when the tokenizer lacks it)."""
    found = tokenizer.token_to_id(token)
    if found is None:
        raise ExportError(ExportReason.TOKENIZER_INVALID, f"the tokenizer lacks {token}")
    return int(found)


class Encoder(nn.Module):
    """input_features -> the decoder layers' cross-attention keys and values."""

    def __init__(self, model: WhisperForConditionalGeneration) -> None:
        super().__init__()
        self.encoder = model.model.encoder
        self.layers = model.model.decoder.layers
        self.heads = model.config.decoder_attention_heads

    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.encoder(input_features).last_hidden_state
        keys = [_heads(layer.encoder_attn.k_proj(hidden), self.heads) for layer in self.layers]
        values = [_heads(layer.encoder_attn.v_proj(hidden), self.heads) for layer in self.layers]
        return (*keys, *values)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.reshape(batch, length, heads, width // heads).transpose(1, 2)


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:  # noqa: E501
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    out = torch.softmax(scores, dim=-1) @ v
    batch, heads, length, dim = out.shape
    return out.transpose(1, 2).reshape(batch, length, heads * dim)


class DecoderStep(nn.Module):
    """(input_ids, self cache, cross keys/values) -> (logits, extended self cache)."""

    def __init__(self, model: WhisperForConditionalGeneration) -> None:
        super().__init__()
        self.decoder = model.model.decoder
        self.proj_out = model.proj_out
        self.heads = model.config.decoder_attention_heads
        self.n_layers = len(self.decoder.layers)

    def forward(self, input_ids: torch.Tensor, *cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.n_layers
        self_k, self_v = cache[0:n], cache[n : 2 * n]
        cross_k, cross_v = cache[2 * n : 3 * n], cache[3 * n : 4 * n]
        past = self_k[0].shape[2]
        length = input_ids.shape[1]
        positions = torch.arange(length) + past
        x = self.decoder.embed_tokens(input_ids) + self.decoder.embed_positions.weight[positions]
        # token i (at past + i) sees the keys 0 .. past + i
        keys = torch.arange(past + length)
        mask = torch.where(keys[None, :] <= positions[:, None], 0.0, float("-inf"))
        new_k, new_v = [], []
        for i, layer in enumerate(self.decoder.layers):
            attn = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            k = torch.cat([self_k[i], _heads(attn.k_proj(h), self.heads)], dim=2)
            v = torch.cat([self_v[i], _heads(attn.v_proj(h), self.heads)], dim=2)
            new_k.append(k)
            new_v.append(v)
            x = x + attn.out_proj(_attend(_heads(attn.q_proj(h), self.heads), k, v, mask))
            cross = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            q = _heads(cross.q_proj(h), self.heads)
            x = x + cross.out_proj(_attend(q, cross_k[i], cross_v[i], None))
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
        x = self.decoder.layer_norm(x)
        logits = self.proj_out(x)
        return (logits, *new_k, *new_v)


def names(layers: int) -> tuple[list[str], list[str], list[str]]:
    """(cross, self-cache inputs, decoder outputs) names."""
    cross = [f"cross_{kv}_{i}" for kv in "kv" for i in range(layers)]
    past = [f"self_{kv}_{i}" for kv in "kv" for i in range(layers)]
    present = ["logits", *(f"present_{kv}_{i}" for kv in "kv" for i in range(layers))]
    return cross, past, present


def export_whisper(model: WhisperForConditionalGeneration, encoder: Path, decoder: Path) -> None:
    """The encoder and the decoder step as ONNX (decoder: dynamic token and cache lengths)."""
    from model_export.onnx_export import OPSET, quiet

    model.eval()
    cfg = model.config
    layers, heads = cfg.decoder_layers, cfg.decoder_attention_heads
    dim = cfg.d_model // heads
    cross, past, present = names(layers)
    features = torch.zeros(1, N_MELS, N_FRAMES)
    with quiet(), torch.no_grad():
        torch.onnx.export(
            Encoder(model), (features,), str(encoder), input_names=["input_features"],
            output_names=cross, opset_version=OPSET, do_constant_folding=True, dynamo=False,
            external_data=False,
        )  # fmt: skip
        kv = [torch.zeros(1, heads, 1500, dim) for _ in cross]
        cache = [torch.zeros(1, heads, 3, dim) for _ in past]
        ids = torch.zeros(1, 2, dtype=torch.int64)
        dynamic: dict[str, dict[int, str]] = {"input_ids": {1: "tokens"}, "logits": {1: "tokens"}}
        dynamic.update({name: {2: "past"} for name in past})
        dynamic.update({name: {2: "total"} for name in present[1:]})
        torch.onnx.export(
            DecoderStep(model), (ids, *cache, *kv), str(decoder),
            input_names=["input_ids", *past, *cross], output_names=present,
            dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True, dynamo=False,
            external_data=False,
        )  # fmt: skip


def torch_greedy(
    model: WhisperForConditionalGeneration, features: np.ndarray, prompt: list[int], end: int,
    max_new: int,
) -> list[int]:  # fmt: skip
    """The reference: greedy over HF's model itself, the whole sequence each step, no cache.
    Returns the generated ids (prompt and end token excluded)."""
    ids = list(prompt)
    x = torch.from_numpy(features)
    with torch.no_grad():
        encoded = model.model.encoder(x).last_hidden_state
        for _ in range(max_new):
            out = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([ids]))
            best = int(out.logits[0, -1].argmax())
            if best == end:
                break
            ids.append(best)
    return ids[len(prompt) :]


def check_token_parity(
    model: WhisperForConditionalGeneration, encoder: Path, decoder: Path,
    inputs: list[np.ndarray], prompt: list[int], end: int, max_new: int,
) -> int:  # fmt: skip
    """Each (1, 80, 3000) input: the ONNX pair decoded by the runtime's greedy loop must give
    PyTorch's token ids exactly (PARITY_FAILED otherwise). Returns the tokens compared."""
    from alertfusion.stt_whisper import WhisperSessions, greedy
    from model_export.onnx_export import ort_session

    sessions = WhisperSessions(ort_session(encoder), ort_session(decoder))
    tokens = 0
    for i, x in enumerate(inputs):
        want = torch_greedy(model, x, prompt, end, max_new)
        got = greedy(sessions, x, prompt, end, max_new)
        if got != want:
            pairs = zip(got, want, strict=False)
            first = next((j for j, (a, b) in enumerate(pairs) if a != b), "the end")
            raise ExportError(
                ExportReason.PARITY_FAILED,
                f"whisper: ONNX decodes input {i} to {len(got)} tokens that differ from "
                f"PyTorch's {len(want)} (first difference at {first}); refused",
            )
        tokens += len(want)
    return tokens
