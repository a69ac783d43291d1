"""Every real message in the shared vectors decodes to its reference tree and re-encodes to the
same bytes, through both the dict fast path and the C JSON path."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import ccsbus_exi

VECTORS: list[dict[str, Any]] = []
_folder = Path(__file__).resolve().parents[3].parent / "shared" / "vectors"
if _folder.is_dir():
    for _f in sorted(_folder.glob("*.jsonl")):
        for _n, _line in enumerate(_f.read_text().splitlines(), 1):
            if _line.strip():
                _v = json.loads(_line)
                _v["id"] = f"{_f.stem}:{_n}:{_v['message']}"
                VECTORS.append(_v)

needs_vectors = pytest.mark.skipif(not VECTORS, reason=f"{_folder} is missing")


@needs_vectors
@pytest.mark.parametrize("vec", VECTORS, ids=[v["id"] for v in VECTORS])
def test_decode_matches_reference_tree(vec: dict[str, Any]) -> None:
    assert ccsbus_exi.decode(vec["schema"], bytes.fromhex(vec["hex"])) == vec["tree"]


@needs_vectors
@pytest.mark.parametrize("vec", VECTORS, ids=[v["id"] for v in VECTORS])
def test_encode_reproduces_bytes(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["hex"])
    assert ccsbus_exi.encode(vec["schema"], vec["tree"]) == data
    assert ccsbus_exi.encode(vec["schema"], ccsbus_exi.decode(vec["schema"], data)) == data


@needs_vectors
@pytest.mark.parametrize("vec", VECTORS, ids=[v["id"] for v in VECTORS])
def test_c_json_path(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["hex"])
    text = ccsbus_exi.decode_json(vec["schema"], data)
    assert json.loads(text) == vec["tree"]
    assert ccsbus_exi.encode_json(vec["schema"], text) == data
    # member order in the JSON must not matter to the encoder
    shuffled = json.dumps(_reverse_keys(vec["tree"]))
    assert ccsbus_exi.encode_json(vec["schema"], shuffled) == data


def _reverse_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _reverse_keys(node[k]) for k in reversed(list(node))}
    if isinstance(node, list):
        return [_reverse_keys(x) for x in node]
    return node


@needs_vectors
def test_all_three_schemas_covered() -> None:
    per_schema = Counter(v["schema"] for v in VECTORS)
    assert set(per_schema) == {"apphand", "din", "iso2"}
