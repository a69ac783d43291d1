"""Soak: 50 consecutive sessions on the same running stacks, nothing may leak.

Every session is a full plug-in .. unplug on the same service processes (fast battery). After each
session the simulation records every process's RSS and open descriptors; the test compares the first
and the last session and checks that no process outlives the run. On mosquitto, so the broker is not part of what
is measured (the embedded broker runs inside the simulation's own process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SESSIONS = 50
RSS_GROWTH_KIB = 6 * 1024   # a service may settle a little (caches, first-use imports), not grow
FD_GROWTH = 2


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fifty_sessions_without_leaks(tmp_path: Path, mosquitto: Any) -> None:
    out = tmp_path / "soak"
    cmd = [sys.executable, "-m", "ccsbus", "sim", "--out", str(out), "--plain", "--sessions", str(SESSIONS),
           "--start-soc", "60", "--target-soc", "61", "--speed", "1000", "--timeout", "90",
           "--log-level", "WARNING", "--broker", mosquitto.url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1700, cwd=REPO)
    rounds = json.loads((out / "sessions.json").read_text())
    log = json.loads((out / "session.json").read_text())
    assert proc.returncode == 0, f"{rounds[-1]['reason']}\n{proc.stdout[-2000:]}"
    assert len(rounds) == SESSIONS and all(r["result"] == "ok" for r in rounds)
    first, last = rounds[0], rounds[-1]
    lines = [f"{'process':<10} {'RSS start MiB':>14} {'RSS end MiB':>12} {'fds start':>10} {'fds end':>8}"]
    for name in sorted(first["rss_kib"]):
        a, b = first["rss_kib"][name], last["rss_kib"][name]
        lines.append(f"{name:<10} {a / 1024:>14.1f} {b / 1024:>12.1f} {first['fds'][name]:>10} "
                     f"{last['fds'][name]:>8}")
    lines.append(f"{'sim':<10} {first['sim_rss_kib'] / 1024:>14.1f} {last['sim_rss_kib'] / 1024:>12.1f} "
                 f"{first['sim_fds']:>10} {last['sim_fds']:>8}")
    print("\n" + "\n".join(lines))
    for name in first["rss_kib"]:
        assert last["rss_kib"][name] - first["rss_kib"][name] < RSS_GROWTH_KIB, name
        assert last["fds"][name] - first["fds"][name] <= FD_GROWTH, name
    assert last["sim_fds"] - first["sim_fds"] <= FD_GROWTH
    assert all(code == 0 for code in log["exit_codes"].values()), log["exit_codes"]
    for name, pid in log["pids"].items():
        assert not os.path.exists(f"/proc/{pid}") or _not_ours(pid), f"{name} (pid {pid}) outlived the run"


def _not_ours(pid: int) -> bool:
    """A recycled pid that now belongs to something else is not a leak."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"ccsbus" not in cmdline
