"""Any text at all: the converted tokenizer and the TextEncoder never crash or mis-frame."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from alertfusion.text import TextEncoder
from model_export.tokenizer import PIPELINES, convert_tokenizer

pytestmark = pytest.mark.export

# Arbitrary Unicode (no surrogates), weighted towards what breaks normalisers: marks, jamo,
# controls, whitespace and the start/end of the string.
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from("\u0301\u0323\u200d\u200c\r\n\t \u3000\u2581\x7f\ufe0fㅋㅠ가각!…"),
    ),
    max_size=80,
)


@pytest.fixture(scope="module", params=PIPELINES)
def converted(
    request: pytest.FixtureRequest,
    kobert_like_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Tokenizer, TextEncoder]:
    tokenizer_json = convert_tokenizer(
        kobert_like_model, max_len=16, pipeline=request.param
    ).tokenizer_json
    path = tmp_path_factory.mktemp(request.param) / "tokenizer.json"
    path.write_text(tokenizer_json, encoding="utf-8")
    return Tokenizer.from_str(tokenizer_json), TextEncoder.from_file(path, max_len=16)


_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_SETTINGS
@given(text=_TEXT)
def test_any_text_is_framed(converted: tuple[Tokenizer, TextEncoder], text: str) -> None:
    tokenizer, encoder = converted
    ids = tokenizer.encode(text).ids
    assert ids[0] == 2 and ids[-1] == 3 and 2 <= len(ids) <= 16
    assert all(0 <= i < 8_002 for i in ids)
    encoded = encoder.encode(text)
    if encoded is None:
        assert len(ids) == 2 or not text.strip()
    else:
        assert encoded.input_ids[0].tolist() == ids
