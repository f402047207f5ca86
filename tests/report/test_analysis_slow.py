"""The slow tests of test_analysis.py: `make test` runs them,
`pytest` alone does not (whole corpora, real model files, real runs)."""


import numpy as np
import pytest
from test_analysis import ALPHAS  # (tests/report/ is on sys.path)

from lsap import config
from lsap.report import analysis


@pytest.mark.slow
def test_table1_and_overlap_on_real_models(small_corpus, tiny_cfg, tmp_path):
    from lsap.data import vocab

    cfg = config.validate({**tiny_cfg, "analysis": {**tiny_cfg["analysis"], "table1": {
        **tiny_cfg["analysis"]["table1"], "examples": 2, "seq_len": 16, "seeds": [21, 42],
        "models": [{"kind": "pretrained", "name": "smollm2"}]}}})
    result = analysis.table1(cfg, small_corpus, log=lambda *_: None)
    m = result["models"]["smollm2"]
    for d in cfg["corpus"]["domains"]:
        means = [np.mean(list(m["means"][d][str(a)].values())) for a in ALPHAS]
        assert means[0] >= means[1] >= means[2] > 0
        assert all(mu <= analysis.max_count(a) for mu, a in zip(means, ALPHAS, strict=True))
        assert sum(m["histograms"][d]["0.05"]) == 2 * 2 * 16  # seeds × examples × positions
    df = analysis.table1_frame(result, cfg)
    assert len(df) == 3 + 9 and df.iloc[3]["model"] == "paper: Qwen3-0.6B"
    assert df.iloc[3]["wiki (WT)"] == "9.26" and df.iloc[3]["AVG"] == "9.59"

    pairs = [("gpt2", vocab.load_pretrained("gpt2"), "smollm2", vocab.load_pretrained("smollm2"))]
    ov = analysis.overlap_frame(cfg, small_corpus, pairs)
    assert ov.loc[0, "|Σ∩|"] == 36_960
    shares = ov.filter(like="tokens in Σ∩").iloc[0]
    assert ((shares > 0.8) & (shares <= 1)).all()  # most running text survives translation
