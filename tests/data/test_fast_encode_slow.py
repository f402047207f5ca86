"""The slow tests of test_fast_encode.py: `make test` runs them,
`pytest` alone does not (whole corpora, real model files, real runs)."""

import pytest
from test_fast_encode import _assert_same_ids  # (tests/data/ is on sys.path)

from lsap import config
from lsap.data import corpus
from lsap.data.corpus import iter_documents


@pytest.mark.slow
def test_every_tokenizer_encodes_the_whole_tiny_corpus_as_hf(tiny_cfg, fetched, tmp_path):
    corpus.build(config.validate(tiny_cfg), tmp_path, log=lambda *_: None)
    texts = [t for s in corpus.SPLITS for _, t in iter_documents(tmp_path, s)]
    assert len(texts) > 10_000
    _assert_same_ids(texts, texts[:2000])
