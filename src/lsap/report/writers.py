"""Write tables (.md, .tex booktabs, .csv) and figures (.png, .pdf), each with provenance."""

from __future__ import annotations

import html
import json
import textwrap
from pathlib import Path

import pandas as pd

from lsap.io.files import atomic_path, write_text
from lsap.report.provenance import one_line


def _fmt(v, digits: int) -> str:
    if isinstance(v, float):
        return "n/a" if pd.isna(v) else f"{v:.{digits}f}"
    return str(v)


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"), ("≥", r"$\geq$")):
        s = s.replace(a, b)
    return s


def write_table(df: pd.DataFrame, stem: str | Path, caption: str, prov: dict, digits: int = 2,
                notes: str = "") -> list[Path]:
    """stem.md, stem.tex, stem.csv and stem.html (the report shows it in place); the provenance goes
    in each (CSV: '#' comment lines)."""
    stem = Path(stem)
    line = one_line(prov)
    cells = [[_fmt(v, digits) for v in row] for row in df.itertuples(index=False)]
    head = [str(c) for c in df.columns]
    pipe = lambda t: t.replace("|", "\\|")  # noqa: E731 (a '|' in a cell, e.g. |Σ∩|, would end it)
    md = [f"**{caption}**", "", "| " + " | ".join(map(pipe, head)) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(map(pipe, r)) + " |" for r in cells]
    md += ["", notes, "", f"<sub>Provenance: {line}</sub>", ""] if notes else ["", f"<sub>Provenance: {line}</sub>", ""]
    write_text(stem.with_suffix(".md"), "\n".join(md))
    tex = [f"% Provenance: {line}", r"\begin{table}[t]", r"\centering", r"\small",
           r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}", r"\toprule",
           " & ".join(_tex_escape(h) for h in head) + r" \\", r"\midrule"]
    tex += [" & ".join(_tex_escape(c) for c in r) + r" \\" for r in cells]
    tex += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex_escape(caption)}}}", r"\end{table}", ""]
    write_text(stem.with_suffix(".tex"), "\n".join(tex))
    write_text(stem.with_suffix(".csv"), f"# {caption}\n# Provenance: {line}\n" + df.to_csv(index=False))
    write_text(stem.with_suffix(".html"), _html(head, cells, caption, notes, line))
    return [stem.with_suffix(s) for s in (".md", ".tex", ".csv", ".html")]


def _html(head: list[str], cells: list[list[str]], caption: str, notes: str, prov_line: str) -> str:
    """One table as a page of its own (the Snakemake report shows HTML in place, Markdown as a download)."""
    e = html.escape
    rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>\n" for r in cells)
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><style>{_CSS}</style></head><body>\n"
            f"<p class='caption'>{e(caption)}</p>\n<table>\n<thead><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in head) + f"</tr></thead>\n<tbody>\n{rows}</tbody></table>\n"
            + (f"<p>{e(notes)}</p>\n" if notes else "")
            + f"<p class='prov'>Provenance: {e(prov_line)}</p>\n</body></html>\n")


_CSS = ("body{font-family:sans-serif;font-size:13px;margin:1em} table{border-collapse:collapse} "
        "th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right} th:first-child,td:first-child"
        "{text-align:left} thead th{border-bottom:2px solid #444} .caption{font-weight:bold;max-width:70em} "
        ".prov{color:#777;font-size:11px}")


def read_table(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, comment="#")


def save_figure(fig, stem: str | Path, prov: dict) -> list[Path]:
    """stem.png and stem.pdf with the provenance in the file metadata and a footer line."""
    stem = Path(stem)
    # below the axes, wrapped to the figure's width, so the footer never widens the figure
    footer = textwrap.fill(one_line(prov), width=int(fig.get_figwidth() * 30))
    fig.text(0.01, -0.02, footer, fontsize=5, color="0.4", ha="left", va="top")
    out = []
    for ext, meta in ((".png", {"Description": json.dumps(prov)}), (".pdf", {"Subject": json.dumps(prov)})):
        with atomic_path(stem.with_suffix(ext)) as tmp:
            fig.savefig(tmp, format=ext[1:], metadata=meta, bbox_inches="tight", dpi=150)
        out.append(stem.with_suffix(ext))
    return out
