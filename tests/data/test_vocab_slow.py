"""The slow tests of test_vocab.py: `make test` runs them,
`pytest` alone does not (whole corpora, real model files, real runs)."""

import pytest
from test_vocab import TEXT  # (tests/data/ is on sys.path)

from lsap.data import vocab


@pytest.mark.slow
def test_gemma3_tokenizer_from_gguf():
    from lsap.io import assets

    assets.fetch("gemma3", log=lambda *_: None)
    tok = vocab.load_pretrained("gemma3")
    assert len(tok) >= 262_000
    assert tok.decode(tok(TEXT, add_special_tokens=False)["input_ids"]) == TEXT
