"""A report whose first screen is the verdict: the Snakemake HTML report's landing text (written by
lsap.report.pages from the run) shows its title and its "Verdict." line on a 1366×768 laptop screen.

Snakemake centres the landing text vertically in a panel one screen high, so a text taller than the
screen loses its top (the title and the verdict), out of reach of the scroll bar. The page is the
small run's, from its committed tables (paper_tables/small/)."""

import json
import re
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from lsap import REPO_ROOT, config
from lsap.report import pages, results

SMALL = REPO_ROOT / "paper_tables" / "small"
PROV = {"config": "small", "config_hash": "1f10fa0d42a40b1c", "git_commit": "be26da9a681c", "assets": {},
        "hardware": "CPU", "date": "today"}


def _description() -> str:
    cfg = config.load(REPO_ROOT / "config" / "small.yaml")
    contrasts = pd.read_csv(SMALL / "contrasts.csv")
    primary = cfg["students"]["primary_contrast"]
    return pages.description(cfg, contrasts, results.verdict_sentence(contrasts, primary), PROV)


def test_the_landing_text_opens_with_title_and_verdict_and_stays_short():
    """Fails on the code before this change: after the verdict came the contrast table and the whole
    provenance line in the open, 1,208 px of text at 1366×768 (the landing was taller than the screen)."""
    import docutils.core
    import jinja2

    rst = jinja2.Environment().from_string(_description()).render(snakemake=None)  # as Snakemake renders it
    html = docutils.core.publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["html_body"]
    body = re.sub(r"^.*?<main>|</main>.*$", "", html, flags=re.S)
    blocks = re.findall(r"<(h1|p|details|table)\b[^>]*>(.*?)</\1>", body, flags=re.S)
    assert blocks[0][0] == "h1" and "LSAP replication: run small" in blocks[0][1]
    assert blocks[1][0] == "p" and blocks[1][1].startswith("<strong>Verdict.</strong> lsap_a0.05 − CE")
    folded = re.sub(r"<details>.*?</details>", "", body, flags=re.S)
    assert "<details>" in body and "<table" in body and "<table" not in folded  # the contrasts, folded below
    shown = re.sub(r"<[^>]+>|\s+", " ", folded).strip()
    assert len(shown) < 800, (len(shown), shown)  # a few lines at Snakemake's 32rem text column


def _report(tmp_path) -> str:
    """A real `snakemake --report` with the small run's landing page, its forest plot (Verdict), a
    table (Tables) and a figure (Figures): the report of a run, at the size of a test."""
    (tmp_path / "description.rst").write_text(_description())
    files = {"forest.png": REPO_ROOT / "figures" / "small" / "contrasts_forest.png",
             "bpb.png": REPO_ROOT / "figures" / "small" / "bpb_vs_flops.png",
             "head_to_head.html": SMALL / "head_to_head.html"}
    for name, src in files.items():
        shutil.copy(src, tmp_path / f"src_{name}")
    (tmp_path / "Snakefile").write_text(textwrap.dedent("""
        report: "description.rst"

        rule all:
            input: "forest.png", "bpb.png", "head_to_head.html"

        rule publish:
            output:
                report("forest.png", category="Verdict"),
                report("bpb.png", category="Figures"),
                report("head_to_head.html", category="Tables"),
            shell:
                "cp src_forest.png forest.png && cp src_bpb.png bpb.png && cp src_head_to_head.html head_to_head.html"
        """))
    for args in ([], ["--report", "report.html"]):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return str(tmp_path / "report.html")


# measured once the page has drawn: where the title and the verdict paragraph are on the screen
PROBE = """<script>
setTimeout(function () {
  var title = Array.from(document.querySelectorAll("h1")).find(e => e.textContent.includes("LSAP replication"));
  var strong = Array.from(document.querySelectorAll("strong")).find(e => e.textContent.startsWith("Verdict."));
  var box = e => { if (!e) return null; var r = e.getBoundingClientRect(); return [r.top, r.bottom, r.left, r.right]; };
  var out = {title: box(title), verdict: box(strong && strong.parentElement), w: innerWidth, h: innerHeight};
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 4000);
</script></body>"""


def test_title_and_verdict_are_on_the_first_screen_at_1366x768(tmp_path):
    """Fails on the code before this change: the landing text was 1,208 px tall, centred in a 768 px
    panel, so the title and the verdict sat above the top of the screen."""
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if browser is None:
        pytest.skip("no headless Chromium here (apt-get install chromium): the landing text's structure is "
                    "checked by test_the_landing_text_opens_with_title_and_verdict_and_stays_short")
    page = _report(tmp_path)
    probed = tmp_path / "probed.html"
    head, _, tail = open(page).read().rpartition("</body>")  # the page's own, not one inside its data
    probed.write_text(head + PROBE + tail)
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1366,768", "--virtual-time-budget=20000", "--dump-dom",
                           f"file://{probed}"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, proc.stdout[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"'))
    # headless Chromium keeps ~90 px of a 768 px window for its (hidden) browser frame: the page gets
    # less than a laptop's screen, so what fits here fits there
    assert seen["w"] == 1366 and 600 <= seen["h"] <= 768, seen
    for what in ("title", "verdict"):
        top, bottom, left, right = seen[what]
        assert 0 <= top and bottom <= seen["h"] and 0 <= left and right <= seen["w"], (what, seen)
