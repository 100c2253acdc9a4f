"""Real text for the text models: Austen novels, Wikipedia pages, Python docs and the gensim similarity sets.

Data root: ``$EDGECOMP_DATA`` or ``~/.cache/edgecomp/data`` (``make data`` fills it), holding
``janeaustenr/`` (Debian r-cran-janeaustenr, unpacked) and ``gensim/`` (the gensim wheel's ``test/test_data``).
``pydoc_topics`` needs nothing: CPython ships it. Every loader returns plain Python / numpy values:

- ``austen(novel) -> str``: one of ``NOVELS``, lines joined with newlines.
- ``enwiki_text(max_pages=None) -> str``: article text of the shortened enwiki dump, markup stripped,
  pages separated by blank lines (redirects and non-article namespaces skipped).
- ``pydoc_topics() -> list[str]``: the 79 ``pydoc_data.topics`` documents, in sorted key order.
- ``lee50() -> (docs list[str] of 50, sim float64 [50, 50])``: Lee et al. 2005 documents and the human
  similarity matrix, symmetrised from its upper triangle (diagonal 1).
- ``wordsim353()`` / ``simlex999() -> list[(word1, word2, score)]``.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import html
import os
import re
import warnings
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np

from edgecomp.errors import MissingDataError

NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
_AUSTEN_DIR = "janeaustenr/usr/lib/R/site-library/janeaustenr/data"
_GENSIM_DIR = "gensim/gensim/test/test_data"
_ENWIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def data_root() -> Path:
    """The data root: ``$EDGECOMP_DATA`` or ``~/.cache/edgecomp/data``."""
    return Path(os.environ.get("EDGECOMP_DATA") or Path.home() / ".cache" / "edgecomp" / "data")


def _need(rel: str, what: str) -> Path:
    path = data_root() / rel
    if not path.exists():
        raise MissingDataError(f"{what} not found at {path}", hint="make data (or set EDGECOMP_DATA to its root)")
    return path


# --- Jane Austen (R data, parsed with the `rdata` package) -------------------------------------------------

@functools.cache
def _austen_index() -> tuple[dict, bytes]:
    try:
        import rdata
    except ImportError:
        raise MissingDataError("the Austen novels need the 'rdata' package", hint="pip install rdata") from None
    d = _need(_AUSTEN_DIR, "janeaustenr R data")
    rdx, rdb = d / "Rdata.rdx", d / "Rdata.rdb"
    if not rdx.exists() or not rdb.exists():
        raise MissingDataError(f"janeaustenr Rdata.rdx/.rdb not found in {d}", hint="make data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(rdx.read_bytes())))["variables"]
    return index, rdb.read_bytes()


@functools.cache
def austen(novel: str) -> str:
    """The full text of one Austen novel (a name in ``NOVELS``), one line of the R vector per line."""
    import rdata

    if novel not in NOVELS:
        raise ValueError(f"unknown Austen novel {novel!r}; known: {', '.join(NOVELS)}")
    index, rdb = _austen_index()
    off, length = (int(x) for x in index[novel])
    with warnings.catch_warnings():  # rdata warns "Unknown file type: assumed RDS" for each lazy-load record
        warnings.simplefilter("ignore", UserWarning)
        lines = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(rdb[off + 4 : off + length])))
    return "\n".join(str(x) for x in lines)


# --- Wikipedia ----------------------------------------------------------------------------------------------

_DROP_LINKS = re.compile(r"\[\[(?:File|Image|Category|[a-z\-]{2,12}):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", re.I)
_SUBS = [
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"<ref[^>/]*/>", re.S), ""),
    (re.compile(r"<ref[^>]*>.*?</ref>", re.S), ""),
    (re.compile(r"<(math|gallery|timeline|source|syntaxhighlight)[^>]*>.*?</\1>", re.S), ""),
    (re.compile(r"</?[a-zA-Z][^>]*>"), ""),
    (re.compile(r"\[\[[^\[\]|]*\|([^\[\]]*)\]\]"), r"\1"),
    (re.compile(r"\[\[([^\[\]]*)\]\]"), r"\1"),
    (re.compile(r"\[https?://\S+ ([^\]]*)\]"), r"\1"),
    (re.compile(r"\[https?://\S+\]"), ""),
    (re.compile(r"'{2,}"), ""),
    (re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M), r"\1"),
    (re.compile(r"^[*#:;]+\s*", re.M), ""),
    (re.compile(r"__[A-Z]+__"), ""),
    (re.compile(r"[ \t]+"), " "),
    (re.compile(r"\n{3,}"), "\n\n"),
]


def _strip_nested(text: str, open_: str, close: str) -> str:
    """Remove (possibly nested) ``open_ ... close`` spans, e.g. ``{{templates}}`` and ``{| tables |}``."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(open_, i):
            depth, i = depth + 1, i + len(open_)
        elif depth and text.startswith(close, i):
            depth, i = depth - 1, i + len(close)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def strip_wikitext(text: str) -> str:
    """Wikitext -> readable prose: templates, tables, refs, tags, files and categories dropped, links unwrapped."""
    text = html.unescape(text)
    text = _strip_nested(_strip_nested(text, "{{", "}}"), "{|", "|}")
    for _ in range(2):  # file captions may hold links; a second pass catches what the first exposed
        text = _DROP_LINKS.sub("", text)
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    return "\n".join(line.strip() for line in text.splitlines()).strip()


@functools.cache
def enwiki_text(max_pages: int | None = None) -> str:
    """Article text of the gensim enwiki sample (206 pages before filtering), markup stripped."""
    path = _need(f"{_GENSIM_DIR}/{_ENWIKI}", "enwiki sample")
    pages: list[str] = []
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f, events=("end",)):
            if elem.tag.rsplit("}", 1)[-1] != "page":
                continue
            ns = next((c.text for c in elem.iter() if c.tag.endswith("}ns")), "0")
            redirect = any(c.tag.endswith("}redirect") for c in elem.iter())
            body = next((c.text or "" for c in elem.iter() if c.tag.endswith("}text")), "")
            elem.clear()
            if ns == "0" and not redirect and not body.lstrip().upper().startswith("#REDIRECT"):
                prose = strip_wikitext(body)
                if prose:
                    pages.append(prose)
            if max_pages is not None and len(pages) >= max_pages:
                break
    return "\n\n".join(pages)


# --- Python docs (held-apart calibration text) ------------------------------------------------------------

def pydoc_topics() -> list[str]:
    """CPython's ``pydoc_data.topics`` documents (English documentation, PSF licence), sorted by topic name."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


# --- Similarity benchmarks (gensim test_data) --------------------------------------------------------------

def lee50() -> tuple[list[str], np.ndarray]:
    """(50 news documents, human similarity float64 [50, 50] symmetric with unit diagonal)."""
    docs = _need(f"{_GENSIM_DIR}/lee.cor", "Lee corpus").read_text(encoding="latin-1").splitlines()
    docs = [d.strip() for d in docs if d.strip()]
    sim = np.loadtxt(_need(f"{_GENSIM_DIR}/similarities0-1.txt", "Lee similarity matrix"), dtype=np.float64)
    upper = np.triu(sim, 1)
    sim = upper + upper.T + np.eye(len(sim))
    if len(docs) != 50 or sim.shape != (50, 50):
        raise MissingDataError(f"Lee data malformed: {len(docs)} docs, matrix {sim.shape}", hint="make data")
    return docs, sim


def _word_pairs(name: str) -> list[tuple[str, str, float]]:
    pairs = []
    for line in _need(f"{_GENSIM_DIR}/{name}", name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        w1, w2, score = line.split("\t")[:3]
        pairs.append((w1, w2, float(score)))
    return pairs


def wordsim353() -> list[tuple[str, str, float]]:
    """WordSim353 (353 pairs, human mean 0-10)."""
    return _word_pairs("wordsim353.tsv")


def simlex999() -> list[tuple[str, str, float]]:
    """SimLex-999 (999 pairs, human mean 0-10)."""
    return _word_pairs("simlex999.txt")
