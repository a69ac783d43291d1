"""The committed tables in generated/ and the sample trees in tests/data/ are exactly what the
generator makes from the XSDs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

CODEC = Path(__file__).resolve().parents[1]
SCHEMAS = CODEC.parents[1].parent / "shared" / "schemas"


def test_regenerating_reproduces_committed_tables() -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is missing (XSD set needed to regenerate)")
    pytest.importorskip("xmlschema", reason="xmlschema (dev extra) is missing")
    sys.path.insert(0, str(CODEC))
    try:
        from generator.__main__ import generate, generate_samples
    finally:
        sys.path.remove(str(CODEC))
    files = generate(SCHEMAS)
    assert set(files) == {p.name for p in (CODEC / "generated").iterdir()}
    for name, text in files.items():
        assert (CODEC / "generated" / name).read_text() == text, f"{name} differs: run make generate"
    for name, text in generate_samples(SCHEMAS).items():
        assert (CODEC / "tests" / "data" / name).read_text() == text, f"{name} differs"
