"""One device per rank: every objective of every shipped config is built on the device it is
given, never on the default one.

Under DDP each rank passes its own `cuda:r`; a tensor made without an explicit device lands on
the default device instead (the bug that put every rank's surrogate on cuda:0). On a CPU machine
the same mistake is caught by making the default device `meta`: anything built or computed
without following the given device (cpu) ends up on meta, where the walk below, or the loss
itself, finds it.
"""

import copy

import numpy as np
import pytest
import torch
from conftest import SHIPPED

from lsap import config, methods, models
from lsap.data import shards, vocab
from lsap.data.corpus import iter_documents

TINY_LM = {"arch": "qwen3", "hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}
SEQ = 16


@pytest.fixture(scope="module")
def stand_ins(small_corpus, tmp_path_factory):
    """Real BPE tokenizers for student (400) and surrogate (300) trained on the embedded corpus,
    their Σ∩ tables, and small random LMs saved as the surrogate and SALT's teacher."""
    root = tmp_path_factory.mktemp("devices")
    texts = [t for _, t in iter_documents(small_corpus, "train")]
    student_dir = vocab.save(vocab.train_bpe(texts, 400), root / "student")
    student = vocab.load(student_dir)
    # the students' training shard: its unigram feeds the random-target and uniform-mass controls
    shards.write_split(student_dir, small_corpus, "train", root / "shards", SEQ, log=lambda *_: None)
    surrogate = vocab.load(vocab.save(vocab.train_bpe(texts, 300, split_digits=True), root / "surrogate"))
    vocab.save_translation(root / "translation.npz", student, surrogate)
    for name, n in (("sur", len(surrogate)), ("salt", len(student))):
        models.build(TINY_LM, n, SEQ + 1, seed=1).save_pretrained(root / name)
    return root, len(student)


def _train_shard(root):
    return shards.open_shard(root / "shards", "train")


def _tensors(obj, seen=None, depth=0):
    """Every tensor an object holds: attributes, containers, modules' parameters and buffers, and
    the variables its closures captured (LSAP's candidates close over the surrogate)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
        yield from _tensors({k: v for k, v in vars(obj).items() if not k.startswith("_")}, seen, depth + 1)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v, seen, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v, seen, depth + 1)
    elif callable(obj) and getattr(obj, "__closure__", None):
        for cell in obj.__closure__:
            yield from _tensors(cell.cell_contents, seen, depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("lsap"):
        yield from _tensors(vars(obj), seen, depth + 1)


def _shipped_methods():
    out = []
    for path in SHIPPED:
        cfg = config.load(path)
        for name in cfg["students"]["methods"]:
            out.append(pytest.param(path, name, id=f"{path.stem}-{name}"))
    return out


@pytest.mark.parametrize("path, name", _shipped_methods())
def test_every_objective_follows_the_device_it_is_given(stand_ins, path, name, monkeypatch):
    root, n_vocab = stand_ins
    read = models.from_pretrained

    def read_weights(cls, name_or_dir, **kw):  # HF refuses to read weights under a meta default
        with torch.device("cpu"):
            return read(cls, name_or_dir, **kw)

    monkeypatch.setattr(models, "from_pretrained", read_weights)
    cfg = copy.deepcopy(config.load(path))
    m = cfg["methods"][name]
    if m.get("targets") == "cached":
        pytest.skip("a targets cache holds host arrays; it copies each batch to the step's device (x.device)")
    teachers = cfg["students"]["teachers"]
    teachers.update(surrogate={"kind": "hub", "id": str(root / "sur")},
                    salt_teacher={"kind": "hub", "id": str(root / "salt")})
    cfg["training"]["compile"] = False  # the loop compiles only on CUDA
    student = models.build(TINY_LM, n_vocab, SEQ + 1, seed=0)
    net = models.Trunk(student)
    cpu = torch.device("cpu")
    inputs = {"translation": str(root / "translation.npz"), "targets": None, "n_sequences": 8,
              "data": _train_shard(root)}
    x = torch.from_numpy(np.random.default_rng(0).integers(0, n_vocab, (2, SEQ + 1))).to(cpu)
    with torch.device("meta"):  # the default device, for anything that does not follow `cpu`
        obj = methods.OBJECTIVES[m["objective"]].build(cfg, methods.parse(m), student, inputs, cpu).bind(student)
        held = list(_tensors(obj))
        loss, parts = obj(net, x, torch.arange(2, device=cpu), 0, 10)
        loss.backward()
    assert held or m["objective"] == "ce"
    assert all(t.device == cpu for t in held), sorted({str(t.device) for t in held})
    assert loss.device == cpu and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.device == cpu for p in student.parameters() if p.requires_grad)
    assert all(v.device == cpu for v in parts.values() if torch.is_tensor(v))
