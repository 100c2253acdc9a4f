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
