"""The KoBERT text classifier: `transformers.BertModel` with KoBERT's config + `Linear(768, 6)`.

State-dict keys are those of the original training code's classifier module
(`bert.embeddings...`, `bert.encoder.layer.N...`, `bert.pooler.dense...`, `classifier.weight`,
`classifier.bias`); the classifier reads the pooler output. Dropout (0.5) only acts in
training, so it is kept for fidelity and has no weights.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from transformers import BertConfig, BertModel

Size = Literal["full", "tiny"]

#: skt/kobert-base-v1: BERT-base with KoBERT's 8002-piece SentencePiece vocabulary
KOBERT_VOCAB_SIZE = 8002
NUM_CLASSES = 6
DROPOUT = 0.5


def kobert_config(size: Size = "full", *, vocab_size: int | None = None) -> BertConfig:
    """KoBERT's BertConfig (`full`), or the shrunken test model (`tiny`: hidden 32, 2 layers,
    2 heads, intermediate 64) built by the same code. `vocab_size` overrides the default
    (8002 for full) so the embedding matches the tokenizer actually used."""
    common: dict[str, Any] = {
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "pad_token_id": 1,
    }
    if size == "full":
        dims: dict[str, Any] = {
            "vocab_size": vocab_size or KOBERT_VOCAB_SIZE,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
        }
    elif size == "tiny":
        if vocab_size is None:
            raise ValueError("the tiny config needs the vocabulary size of its tokenizer")
        dims = {
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        }
    else:
        raise ValueError(f"unknown size {size!r}")
    config = BertConfig(**common, **dims)
    # Plain matmul + softmax attention: exports to a graph ONNX Runtime's BERT fusion knows,
    # and computes what the original (pre-SDPA) transformers computed.
    config._attn_implementation = "eager"
    return config


class KoBertClassifier(nn.Module):
    """BertModel + `Linear(hidden, num_classes)` on the pooler output; returns raw logits."""

    def __init__(self, config: BertConfig | None = None, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.config = config or kobert_config("full")
        self.bert = BertModel(self.config, add_pooling_layer=True)
        self.dropout = nn.Dropout(DROPOUT)
        self.classifier = nn.Linear(self.config.hidden_size, num_classes)

    def pooled(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        """The pooler output the classifier reads."""
        out = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        )
        pooled: torch.Tensor = out.pooler_output
        return pooled

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooled(input_ids, attention_mask, token_type_ids)))
