"""Figures that carry the message: the reference lines on every bits-per-byte figure, no dot of
`targets_vs_alpha` hidden behind another, no facet title of `table1_counts` over its neighbour.

Drawn from the committed tables of the small run (paper_tables/small/), as `make tables` draws them."""

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest

from lsap import REPO_ROOT
from lsap.report import plots

matplotlib.use("Agg")
SMALL = REPO_ROOT / "paper_tables" / "small"


@pytest.fixture(scope="module")
def small():
    """The small run's rows and its reference lines, rebuilt in the shape of reference_lines.json /
    surrogate_lines.json from the committed heldout table (its rows are those files' means)."""
    df = pd.read_csv(SMALL / "students.csv")
    held = pd.read_csv(SMALL / "heldout.csv", comment="#").set_index("Model")
    domains = sorted(c[4:] for c in df.columns if c.startswith("bpb_") and c != "bpb_mean")

    def per_domain(row: str) -> dict:
        return {d: {"bpb": float(held.loc[row, f"bpb {d}"])} for d in domains}

    lines = {"unigram": per_domain("unigram (training text)"), "bigram": per_domain("bigram (training text)")}
    sur = next(m for m in held.index if m.startswith("surrogate"))
    surrogate = {"heldout": per_domain(sur)}
    refs = plots.reference_lines(lines, surrogate, domains)
    expected = {"unigram (training text)": held.loc["unigram (training text)", "bpb mean"],
                "KN bigram (training text)": held.loc["bigram (training text)", "bpb mean"],
                "surrogate (own tokenizer)": held.loc[sur, "bpb mean"]}
    return df, refs, expected


def _hlines(ax) -> dict[str, float]:
    """label -> y of every horizontal line drawn on `ax`."""
    out = {}
    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), dtype=float)
        if len(y) and np.all(y == y[0]) and not line.get_label().startswith("_"):
            out[line.get_label()] = float(y[0])
    return out


def test_every_bits_per_byte_figure_draws_the_reference_lines(small):
    """Fails on the code before this change: bpb_vs_flops and heldout_vs_flops drew the students'
    curves alone (no unigram, KN bigram or surrogate line), so a curve could not be read as near
    token frequencies or past the bigram."""
    import matplotlib.pyplot as plt

    df, refs, expected = small
    assert refs == pytest.approx(expected)
    for fig in (plots.figure_bpb_vs_flops(df, refs), plots.figure_heldout_vs_flops(df, refs)):
        ax = fig.axes[0]  # heldout_vs_flops: its bits-per-byte panel
        drawn = _hlines(ax)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        for label, value in expected.items():
            hit = [k for k in drawn if k.startswith(label)]
            assert hit and drawn[hit[0]] == pytest.approx(value), (label, drawn)
            assert any(t.startswith(label) for t in legend), legend
        lo, hi = ax.get_ylim()
        assert lo < min(expected.values()) and hi > max(expected.values())  # in view, not clipped
        plt.close(fig)


def test_no_targets_dot_hides_another(small):
    """Fails on the code before this change: LSAP α = 0.05, its annealed run and the random control
    sit at the same α with (by design) the same number of targets, so three dots of one size and
    shape were drawn on one spot and only the last (the random control) could be seen."""
    import matplotlib.pyplot as plt

    df, _, _ = small
    fig = plots.figure_targets_vs_alpha(df)
    ax = fig.axes[0]
    fig.canvas.draw()
    dots, shapes = [], []
    from matplotlib.collections import PathCollection

    for c in ax.collections:  # the dots (scatter), not the seed bars
        offsets = c.get_offsets()
        if isinstance(c, PathCollection) and len(offsets):
            dots += list(ax.transData.transform(offsets))
            shapes += [c.get_paths()[0].vertices.tobytes()] * len(offsets)
    labels = set(df[df.alpha.notna()].label)
    assert len(dots) == len(labels) >= 3
    diameter_px = np.sqrt(40) * fig.dpi / 72  # s=40 points²
    for (a, sa), (b, sb) in itertools.combinations(zip(dots, shapes, strict=True), 2):
        assert np.hypot(*(a - b)) >= 0.9 * diameter_px or sa != sb, (a, b)
        assert np.hypot(*(a - b)) >= 0.5 * diameter_px, (a, b)  # apart, whatever the shapes
    plt.close(fig)


def _table1_result() -> dict:
    """A Table-1 result as lsap.report.analysis writes table1.json: the committed small run's two models
    (long labels), three α, six domains, per-position count histograms."""
    rng = np.random.default_rng(0)
    t1 = pd.read_csv(SMALL / "table1.csv", comment="#")
    models = [m for m in dict.fromkeys(t1.model) if not m.startswith("paper")]  # the paper's rows are printed only
    domains = ["wiki", "news", "science", "reviews", "books", "mixed"]
    hist = {a: rng.integers(0, 100, size=int(np.ceil(1 / a)) + 3).tolist() for a in (0.01, 0.05, 0.2)}
    return {"models": {m: {"histograms": {d: {str(a): h for a, h in hist.items()} for d in domains}}
                       for m in models}}


def test_table1_facet_titles_do_not_overlap():
    """Fails on the code before this change: the facet titles read 'model = surrogate (trained
    here) | α = 0.01', wider than a panel, so each ran into its neighbour's."""
    import matplotlib.pyplot as plt

    fig = plots.figure_table1(_table1_result())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax in fig.axes:
        for t in [ax.title, *ax.texts]:
            if t.get_text():
                boxes.append((t.get_text(), t.get_window_extent(renderer)))
    for leg in fig.legends:
        boxes.append(("legend", leg.get_window_extent(renderer)))
    assert sum(name.startswith("α = ") for name, _ in boxes) == 3  # each column named once, at the top
    for (n1, b1), (n2, b2) in itertools.combinations(boxes, 2):
        assert not b1.overlaps(b2), (n1, n2)
    assert all(fig.bbox.contains(b.x0, b.y0) and fig.bbox.contains(b.x1, b.y1) for _, b in boxes
               if _ != "legend")
    plt.close(fig)
