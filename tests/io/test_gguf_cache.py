"""lsap.io.gguf_cache: the HF copy of a registry GGUF is the GGUF's own load (same weights, same
tokens), named by the GGUF's bytes, built once, and never half-written or replaced under a reader."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lsap import models
from lsap.data import vocab
from lsap.io import gguf_cache
from lsap.io.files import sha256_file

TEXT = "Surrogate-assisted pretraining, 2026: déjà vu — 3.14159 tokens/s.\n\tdef f(x): return x**2"


def test_the_smollm2_copy_loads_what_the_gguf_loads(fetched):
    gguf = models.gguf_file("smollm2")
    model_dir = gguf_cache.model_folder(gguf)
    assert model_dir.parent.name == f".hf-{sha256_file(gguf)[:16]}" and model_dir.parent.parent == gguf.parent
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert gguf_cache.model_folder(gguf) == model_dir  # built once
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp

    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    copied = models.load_pretrained({"kind": "pretrained", "name": "smollm2"}, torch.device("cpu"))
    assert copied.lm_head.weight.data_ptr() == copied.model.embed_tokens.weight.data_ptr()  # still tied
    ids = torch.tensor([[1, 502, 3000, 17, 49151, 9, 250]])
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, copied(ids).logits)

    tok_direct = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, clean_up_tokenization_spaces=False)
    tok = vocab.load_pretrained("smollm2")
    assert tok.get_vocab() == tok_direct.get_vocab() and tok.eos_token == tok_direct.eos_token
    assert tok(TEXT)["input_ids"] == tok_direct(TEXT)["input_ids"]
    assert models.source_config({}, {"kind": "pretrained", "name": "smollm2"}).to_dict() == copied.config.to_dict()


def test_a_folder_another_job_published_first_is_kept_and_ours_dropped(tmp_path):
    dest = tmp_path / ".hf-0123" / "model"

    def racing_build(tmp):  # another job finishes while this one is still writing
        dest.mkdir(parents=True)
        (dest / "w").write_text("theirs")
        (tmp / "w").write_text("ours")

    assert gguf_cache._publish(racing_build, dest) == dest
    assert (dest / "w").read_text() == "theirs" and sorted(p.name for p in dest.parent.iterdir()) == ["model"]
    assert gguf_cache._publish(lambda tmp: (_ for _ in ()).throw(AssertionError("rebuilt")), dest) == dest
