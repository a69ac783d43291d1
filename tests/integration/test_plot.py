"""`ccsbus plot`: a small session log and a capture become PNGs with the right axes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from ccsbus.testing.fixtures import shared_dir
from ccsbus_tools import plot
from ccsbus_tools.session import PHASE_ORDER, SessionRecorder


def _small_log(path: Path) -> Path:
    rec = SessionRecorder(sample_interval=0.0)
    t = 0.0
    rec.feed("EVSE", "cp/state", {"state": "B", "duty": 5, "time": 0}, t)
    for phase in PHASE_ORDER[1:]:
        t += 1.0
        rec.enter(phase, t)
    for i in range(60):
        t = 3.0 + i * 0.1
        rec.feed("EVSE", "hw/state", {"present_voltage": 350.0 + i, "present_current": 2.0 * i, "time": 0}, t)
        rec.feed("PEV", "soc", 40 + i / 2, t + 0.01)
        rec.feed("PEV", "battery_voltage", 360.0 + i / 4, t + 0.02)
    rec.close(t)
    path.write_text(json.dumps(rec.to_json()))
    return path


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_session_log_to_png(tmp_path: Path) -> None:
    log = _small_log(tmp_path / "session.json")
    assert plot.main([str(log), "-o", str(tmp_path / "out.png")]) == 0
    png = tmp_path / "out.png"
    assert png.stat().st_size > 20_000
    assert _png_size(png) == (1200, 700)


def test_figure_has_the_right_axes_and_phases(tmp_path: Path) -> None:
    series = plot.load_series(_small_log(tmp_path / "session.json"))
    assert [p[0] for p in series.phases] == [p.value for p in PHASE_ORDER]
    fig = plot.build_figure(series)
    labels = {(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes}
    assert ("", "voltage (V)") in labels and ("time (s)", "current (A)") in labels
    assert any(ylabel == "SoC (%)" for _, ylabel in labels)
    voltage_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "voltage (V)")
    names = {line.get_label() for line in voltage_ax.get_lines()}
    assert {"EVSE present voltage", "battery voltage"} <= names
    soc_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "SoC (%)")
    soc = soc_ax.get_lines()[0].get_ydata()
    assert soc[0] == pytest.approx(40) and soc[-1] == pytest.approx(69.5)
    assert len(voltage_ax.patches) == len(PHASE_ORDER)  # one shaded span per phase


def test_capture_to_png(tmp_path: Path) -> None:
    try:
        import ccsbus_exi  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the EXI codec binding is not importable ({exc})")
    capture = shared_dir("captures") / "pyplc" / "2023-05-24_pyPlc_with_Ioniq93prcSoc.pcapng"
    series = plot.load_series(capture)
    assert {"EVSE present voltage", "target current", "SoC"} <= set(series.values)
    assert [p[0] for p in series.phases][:3] == ["session-setup", "cable-check", "pre-charge"]
    out = tmp_path / "cap.png"
    assert plot.main([str(capture), "-o", str(out)]) == 0
    assert out.stat().st_size > 20_000


def test_not_a_session_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert plot.main([str(bad)]) == 2
    assert "not a ccsbus session log" in capsys.readouterr().err
