"""Readers for each corpus source: raw files in, cleaned plain-text documents out.

A reader yields strings (one per document). Cleaning that belongs to a format (Brown tags,
wiki markup, reST markup) lives with its reader; `clean_text` is what every document gets.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import html
import itertools
import json
import math
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator

from lsap.io.assets import asset_paths

_BLANKS = re.compile(r"\n\s*\n\s*\n+")
_SPACES = re.compile(r"[ \t\u00a0]+")
_TAGS = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>\n]*)?/?>")  # HTML-looking tags only


def clean_text(text: str) -> str:
    """NFC, no HTML tags or entities, single spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", html.unescape(text)).replace("\r\n", "\n").replace("\r", "\n")
    text = _TAGS.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


# ---- wiki markup -------------------------------------------------------------------------
_WIKI_SUBS = [
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"<ref[^>/]*/>", re.I), ""),
    (re.compile(r"<ref[^>]*>.*?</ref>", re.I | re.S), ""),
    (re.compile(r"\{\|.*?\|\}", re.S), ""),                                    # tables
    (re.compile(r"\[https?://[^\s\]]+\s+([^\]]*)\]"), r"\1"),                  # [url label]
    (re.compile(r"\[https?://[^\]]*\]"), ""),
    (re.compile(r"'{2,}"), ""),                                                # bold / italic
    (re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M), r"\1"),                        # headings
    (re.compile(r"^[*#:;]+\s*", re.M), ""),                                    # list markers
    (re.compile(r"__[A-Z]+__"), ""),                                           # magic words
]
_TEMPLATE = re.compile(r"\{\{(?:[^{}]|\{(?!\{)|\}(?!\}))*\}\}")  # may hold single { }
_VERBATIM = re.compile(r"<(nowiki|math|pre|code|source|syntaxhighlight)[^>]*>.*?</\1>", re.I | re.S)
_LINK = re.compile(r"\[\[((?:[^\[\]]|\[(?!\[)|\](?!\]))*)\]\]")  # may hold single [ ]
_DROP_LINKS = ("file:", "image:", "category:", "media:")


def _link_text(m: re.Match) -> str:
    inner = m.group(1)
    if inner.lower().startswith(_DROP_LINKS) or re.match(r"^[a-z-]{2,12}:", inner):
        return ""  # files, categories, interlanguage links carry no running text
    return inner.split("|")[-1]


def strip_wiki_markup(text: str) -> str:
    text = _VERBATIM.sub("", text)  # literal blocks may hold braces and brackets
    for pattern, repl in ((_TEMPLATE, ""), (_LINK, _link_text)):
        while True:  # innermost first, so nested templates and links unwind
            text, n = pattern.subn(repl, text)
            if not n:
                break
    for pattern, repl in _WIKI_SUBS:
        text = pattern.sub(repl, text)
    return text


# ---- readers -------------------------------------------------------------------------------
def read_ovos_wiki(path: Path) -> Iterator[str]:
    for art in json.loads(path.read_text(encoding="utf-8")).values():
        yield f"{art['title']}\n\n{art['extract']}"


def read_mediawiki_xml(path: Path) -> Iterator[str]:
    with bz2.open(path) as f:
        for _, el in ET.iterparse(f):
            if not el.tag.endswith("}page"):
                continue
            ns = {"m": el.tag[1:].split("}")[0]}
            text = el.findtext("m:revision/m:text", default="", namespaces=ns)
            if el.findtext("m:ns", namespaces=ns) == "0" and not text.lower().startswith("#redirect"):
                yield f"{el.findtext('m:title', namespaces=ns)}\n\n{strip_wiki_markup(text)}"
            el.clear()


def read_xsum(path: Path) -> Iterator[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        yield json.loads(line)["document"]


def read_lines(path: Path) -> Iterator[str]:
    yield from path.read_text(encoding="utf-8").splitlines()


def read_pubmedqa(path: Path) -> Iterator[str]:
    # "Context (1): ... \nContext (2): ..." -> the abstract's paragraphs
    for line in path.read_text(encoding="utf-8").splitlines():
        passage = json.loads(line)["passage"]
        yield re.sub(r"(?m)^Context \(\d+\):\s*", "", passage).replace("\n", "\n\n")


def read_rotten_tomatoes(path: Path) -> Iterator[str]:
    # one document per film: all its critics' snippets, one paragraph each (plots are not reviews)
    by_film: dict[str, list[str]] = defaultdict(list)
    with bz2.open(path, "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["category"] in ("fresh", "rotten"):
                by_film[row["movie_name"]].append(row["text"].strip())
    for film in sorted(by_film):
        yield "\n\n".join(by_film[film])


def read_text_file(path: Path) -> Iterator[str]:
    yield path.read_text(encoding="utf-8")


_BROWN_FIX = [(re.compile(r"\s+([.,;:!?)\]}%])"), r"\1"), (re.compile(r"([(\[{$])\s+"), r"\1"),
              (re.compile(r"\s+(n't|'s|'re|'ve|'ll|'d|'m)\b"), r"\1"),
              (re.compile(r"``\s*"), '"'), (re.compile(r"\s*''"), '"')]


def read_brown(path: Path) -> Iterator[str]:
    """Brown's word/TAG tokens, one sentence per line, paragraphs by blank lines -> prose."""
    paragraphs, current = [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        words = [tok.rsplit("/", 1)[0] for tok in line.split()]
        sentence = " ".join(words)
        for pattern, repl in _BROWN_FIX:
            sentence = pattern.sub(repl, sentence)
        current.append(sentence)
    if current:
        paragraphs.append(" ".join(current))
    yield "\n\n".join(paragraphs)


_RST_SUBS = [
    (re.compile(r"^\.\. .*?(?=^\S|\Z)", re.M | re.S), ""),                     # directives, comments
    (re.compile(r"^[=\-~^\"'`#*+<>]{3,}\s*$", re.M), ""),                      # heading underlines
    (re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`"), r"\1"),             # :role:`text <target>`
    (re.compile(r"`([^`<]*?)\s*<[^>]*>`_+"), r"\1"),                           # `text <url>`_
    (re.compile(r"``([^`]*)``"), r"\1"),
    (re.compile(r"\*\*([^*]*)\*\*|\*([^*]*)\*"), lambda m: m.group(1) or m.group(2) or ""),
]


def read_rst_file(path: Path) -> Iterator[str]:
    raw = gzip.open(path, "rt", encoding="utf-8", errors="replace").read() if path.suffix == ".gz" \
        else path.read_text(encoding="utf-8", errors="replace")
    for pattern, repl in _RST_SUBS:
        raw = pattern.sub(repl, raw)
    yield raw


_FILE_READERS: dict[str, Callable[[Path], Iterator[str]]] = {
    "ovos_wiki": read_ovos_wiki, "mediawiki_xml": read_mediawiki_xml, "xsum": read_xsum,
    "lines": read_lines, "pubmedqa": read_pubmedqa, "rotten_tomatoes": read_rotten_tomatoes,
    "text_files": read_text_file, "brown": read_brown, "rst_files": read_rst_file,
}


def data_file_share(src: dict, part: int, parts: int) -> tuple[str, list[str], list[str]]:
    """Part `part` of `parts` of a dataset's data files for src's split: every parts-th file from
    the part-th, of the sorted list, so the parts read disjoint files that together are all of
    them (≈ total bytes / parts each). Returns (its packaged builder: json, parquet..., this
    part's files, all files). Under a hub snapshot (cluster jobs, lsap.io.snapshot) the files are the
    snapshot's local copies, the share cut where the snapshot stops (the files past the part's
    max_docs were not downloaded)."""
    from lsap.io import snapshot

    snap = snapshot.dataset_files(src)
    if snap is not None:
        builder, files, local = snap
        share = list(itertools.takewhile(lambda f: f in local, files[part::parts]))
        if len(files) < parts:  # split by rows: the snapshot holds the files of the first max_docs rows only
            return builder, [], [local[f] for f in itertools.takewhile(lambda f: f in local, files)]
        return builder, [local[f] for f in share], [local.get(f, f) for f in files]
    import datasets

    builder = datasets.load_dataset_builder(src["dataset"], src.get("name"), revision=src.get("revision"))
    files = sorted(builder.config.data_files[src["split"]])
    return builder.name, files[part::parts], files


def read_hf_dataset(src: dict, part: int = 0, parts: int = 1) -> Iterator[str]:
    """Slice `part` of `parts` of a hub dataset (paper config) or a local dataset directory,
    streamed: never all in memory. Each part reads only its share of the data files
    (`data_file_share`): `datasets`' split_dataset_by_node would split by files only when their
    number divides by `parts`, and otherwise have every part read the whole stream to keep one
    row in `parts` (SlimPajama: ~59 k files, 16 parts -> 16x the bytes). A dataset with fewer
    files than parts (a small local set) is split by rows instead."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    builder, share, files = data_file_share(src, part, parts)
    if len(files) >= parts:
        ds = datasets.load_dataset(builder, data_files={src["split"]: share}, split=src["split"], streaming=True)
    else:
        ds = datasets.load_dataset(builder, data_files={src["split"]: files}, split=src["split"], streaming=True)
        ds = split_dataset_by_node(ds, rank=part, world_size=parts)
    yield from (row[src["text_field"]] for row in ds)
    if len(files) >= parts and len(share) < len(files[part::parts]):
        # a snapshot holds only the files the part reads up to its max_docs: reaching past them is
        # a snapshot taken for a smaller max_docs
        from lsap.io import snapshot

        raise snapshot.SnapshotError(f"corpus part {part} of {src['dataset']} read every file the hub snapshot "
                                     "holds for it before its max_docs: rerun the hub_snapshot rule")


def read_source(src: dict, part: int = 0, parts: int = 1) -> Iterator[str]:
    """Cleaned documents of one configured source. A hub dataset yields only slice `part` of
    `parts` (and its share of `max_docs`); a file source yields everything (lsap.data.corpus slices it)."""
    cap = src.get("max_docs")
    if src["reader"] == "hf_dataset":
        raw = read_hf_dataset(src, part, parts)
        cap = math.ceil(cap / parts) if cap else cap
    else:
        reader = _FILE_READERS[src["reader"]]
        raw = (doc for p in asset_paths(src["asset"], src["path"]) for doc in reader(p))
    for doc in itertools.islice(raw, cap):  # streams stop reading at the cap
        yield clean_text(doc)
