"""The KoBERT classifier: KoBERT's BertConfig, the original state-dict keys, and masks that
make padded and unpadded inference equal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertModel

from model_export.kobert import KoBertClassifier, kobert_config

pytestmark = pytest.mark.export


def test_full_config_is_kobert_base() -> None:
    cfg = kobert_config("full")
    assert (
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        cfg.max_position_embeddings,
        cfg.type_vocab_size,
        cfg.hidden_act,
    ) == (8002, 768, 12, 12, 3072, 512, 2, "gelu")


def test_state_dict_is_bert_plus_linear_768_to_6() -> None:
    with torch.device("meta"):
        model = KoBertClassifier(kobert_config("full"))
        bert = BertModel(kobert_config("full"), add_pooling_layer=True)
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {f"bert.{k}": tuple(v.shape) for k, v in bert.state_dict().items()}
    expected |= {"classifier.weight": (6, 768), "classifier.bias": (6,)}
    assert keys == expected
    assert keys["bert.embeddings.word_embeddings.weight"] == (8002, 768)
    assert keys["bert.pooler.dense.weight"] == (768, 768)
    # 5 embedding tensors + 16 per layer + pooler 2 + classifier 2
    assert len(keys) == 5 + 16 * 12 + 2 + 2


def test_tiny_config_needs_its_vocabulary_and_shrinks() -> None:
    with pytest.raises(ValueError):
        kobert_config("tiny")
    cfg = kobert_config("tiny", vocab_size=300)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (32, 2, 2)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings) == (64, 300, 512)


def test_padding_with_an_attention_mask_gives_the_unpadded_logits() -> None:
    torch.manual_seed(0)
    model = KoBertClassifier(kobert_config("tiny", vocab_size=300)).eval()
    lengths = [4, 11, 7]
    seqs = [torch.randint(5, 300, (n,)) for n in lengths]
    ids = torch.ones(3, 11, dtype=torch.int64)
    mask = torch.zeros(3, 11, dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    with torch.no_grad():
        batched = model(ids, mask, torch.zeros_like(ids))
        alone = torch.cat(
            [
                model(
                    s[None],
                    torch.ones(1, len(s), dtype=torch.int64),
                    torch.zeros(1, len(s), dtype=torch.int64),
                )
                for s in seqs
            ]
        )
    assert batched.shape == (3, 6)
    np.testing.assert_allclose(batched.numpy(), alone.numpy(), atol=1e-5)


def test_dropout_is_off_in_eval() -> None:
    torch.manual_seed(0)
    model = KoBertClassifier(kobert_config("tiny", vocab_size=300)).eval()
    ids = torch.randint(5, 300, (2, 9))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    with torch.no_grad():
        assert torch.equal(model(*args), model(*args))
