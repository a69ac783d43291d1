"""`ccsbus bench stack`: the figures it reports come from real processes."""

from __future__ import annotations

import json

import pytest

from ccsbus_tools import bench


def test_bench_stack_reports_start_time_and_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["stack", "--repeat", "1", "--no-session", "--json", "--services", "exi,hw"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["services"] == ["exi", "hw"]
    assert 0.05 < report["ready_median_s"] < 30
    for name in ("exi", "hw"):
        assert 5_000 < report["rss_kib"][name] < 500_000  # a Python process, in KiB
        assert 0 < report["pss_kib"][name] <= report["rss_kib"][name]
    assert report["stack_rss_mb"] == pytest.approx(sum(report["rss_kib"].values()) / 1024, abs=0.1)
    assert set(report["goals"]) >= {"rss_met", "ready_met"}


def test_text_report() -> None:
    report = bench.BenchReport("EVSE", ["exi"], [bench.StartResult(1.5, {"exi": 30 * 1024},
                                                                  {"exi": 20 * 1024})])
    text = bench.report_text(report)
    assert "median 1.50 s" in text and "goal <= 3 s: met" in text
    assert "30.0" in text and "20.0" in text
