"""The docs that are generated from data stay in step with the data."""

from __future__ import annotations

from pathlib import Path

from ccsbus.contract import load_contract
from ccsbus.render import DOC_HEADER, to_markdown

REPO = Path(__file__).resolve().parents[1]


def test_topics_doc_matches_the_contract():
    expected = DOC_HEADER + to_markdown(load_contract())
    doc = REPO / "docs" / "topics.md"
    assert doc.read_text(encoding="utf-8") == expected, (
        "docs/topics.md is stale: run `ccsbus contract --write-doc docs/topics.md`")
