"""Build the libFuzzer harness and run it for 60 s over the vectors as seed corpus."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

CODEC = Path(__file__).resolve().parents[1]
VECTORS = CODEC.parents[1].parent / "shared" / "vectors"
SCHEMA_BYTE = {"apphand": 0, "din": 1, "iso2": 2}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fuzz_60s(tmp_path: Path) -> None:
    if shutil.which("clang") is None:
        pytest.skip("clang is missing (needed for -fsanitize=fuzzer)")
    build = tmp_path / "build"
    subprocess.run(["make", "-s", "-C", str(CODEC), "fuzz", f"OUT={build}"], check=True)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = 0
    if VECTORS.is_dir():
        for f in VECTORS.glob("*.jsonl"):
            for line in f.read_text().splitlines():
                v = json.loads(line)
                data = bytes([SCHEMA_BYTE[v["schema"]]]) + bytes.fromhex(v["hex"])
                (corpus / f"seed{seeds}").write_bytes(data)
                seeds += 1
    else:  # still fuzz, from a minimal DIN header
        (corpus / "seed0").write_bytes(bytes([1, 0x80, 0x9A, 0x02, 0x00]))
    proc = subprocess.run(
        [str(build / "exi_fuzz"), "-max_total_time=60", "-print_final_stats=1",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=200)
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert "stat::number_of_executed_units" in proc.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
