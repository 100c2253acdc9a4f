"""Rewrite one generated section of README.md: the text between a begin and an end marker."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def replace_section(begin: str, end: str, body: str, readme: Path = README) -> bool:
    """Put ``body`` between the markers; returns False (README untouched) when the markers are missing."""
    text = readme.read_text()
    if begin not in text or end not in text:
        return False
    start, stop = text.index(begin) + len(begin), text.index(end)
    readme.write_text(text[:start] + "\n" + body + "\n" + text[stop:])
    return True


def run_then_table(doc: str, flag: str, items, build_dir: Path, run, table, begin: str, end: str) -> None:
    """The command line of a results script: ``run(item, build_dir)`` for each item of ``--<flag>`` (default:
    all of ``items``) unless ``--table-only``, then the README section between the markers from ``table()``."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(f"--{flag}", default=",".join(items))
    ap.add_argument("--build-dir", type=Path, default=build_dir)
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if not args.table_only:
        for item in getattr(args, flag).split(","):
            run(item, args.build_dir)
    if not replace_section(begin, end, table()):
        raise SystemExit(f"README.md has no {begin} ... {end} section")


def model_scheme_results(results: Path, models, schemes):
    """The ``*.json`` results in ``results`` that carry "model" and "scheme", as (model, scheme, data) in the
    order of ``models`` x ``schemes`` (pairs without a file are skipped)."""
    import json

    files = {(d["model"], d["scheme"]): d for d in (json.loads(f.read_text()) for f in results.glob("*.json"))}
    for model in models:
        for scheme in schemes:
            if (model, scheme) in files:
                yield model, scheme, files[(model, scheme)]
