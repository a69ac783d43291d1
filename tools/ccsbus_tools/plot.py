"""`ccsbus plot <file>`: a charging session as a PNG: voltage, current and SoC over time, phases marked.

The input is the simulation's session log (`session.json`) or a capture (pcap/pcapng): from a capture
the values come from the V2G messages (EVSEPresentVoltage/Current, EVTargetVoltage/Current, the SoC
in DC_EVStatus) and the phases from the message names.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .session import load_log

PHASE_COLOURS = ["#e8f1fa", "#fdf3e1"]
LINE_COLOURS = {
    "EVSE present voltage": "tab:blue", "PEV inlet voltage": "tab:orange", "battery voltage": "tab:purple",
    "target voltage": "tab:red", "EVSE present current": "tab:blue", "target current": "tab:red",
    "SoC": "tab:green",
}

# V2G message -> phase, for captures (the session log carries its own phases)
_CAPTURE_PHASES = [
    ("supportedAppProtocol", "session-setup"), ("CableCheck", "cable-check"),
    ("PreCharge", "pre-charge"), ("CurrentDemand", "charging"), ("WeldingDetection", "welding-detection"),
    ("SessionStop", "session-stop"),
]


@dataclass
class Series:
    """What one figure shows: time axis values per quantity and the phase spans."""

    title: str
    t: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    phases: list[tuple[str, float, float]] = field(default_factory=list)

    def add(self, name: str, t: float, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.t.setdefault(name, []).append(float(t))
            self.values.setdefault(name, []).append(float(value))


def series_from_log(data: dict[str, Any], title: str) -> Series:
    s = Series(title)
    labels = {"evse_voltage": "EVSE present voltage", "inlet_voltage": "PEV inlet voltage",
              "battery_voltage": "battery voltage", "target_voltage": "target voltage",
              "evse_current": "EVSE present current", "target_current": "target current", "soc": "SoC"}
    for sample in data.get("samples", []):
        for key, label in labels.items():
            s.add(label, sample.get("t", 0.0), sample.get(key))
    for span in data.get("phases", []):
        start = float(span["start"])
        end = float(span["end"]) if span.get("end") is not None else start
        s.phases.append((str(span["phase"]), start, end))
    return s


def _physical(value: Any) -> float | None:
    """A DIN/ISO PhysicalValue tree ({Multiplier, Value, Unit}) as a float."""
    if isinstance(value, dict) and "Value" in value:
        try:
            return float(value["Value"]) * 10.0 ** int(value.get("Multiplier", 0))
        except (TypeError, ValueError):
            return None
    return None


def series_from_capture(path: Path) -> Series:
    from .pcap import decode_capture

    listing = decode_capture(path)
    s = Series(path.name)
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for e in listing.entries:
        if e.kind != "V2G" or e.error:
            continue
        body = (e.fields.get("V2G_Message") or {}).get("Body") or {}
        msg = body.get(e.name) if isinstance(body, dict) else None
        for base, phase in _CAPTURE_PHASES:
            if e.name.startswith(base):
                starts.setdefault(phase, e.time)
                ends[phase] = e.time
        if not isinstance(msg, dict):
            continue
        s.add("EVSE present voltage", e.time, _physical(msg.get("EVSEPresentVoltage")))
        s.add("EVSE present current", e.time, _physical(msg.get("EVSEPresentCurrent")))
        s.add("target voltage", e.time, _physical(msg.get("EVTargetVoltage")))
        s.add("target current", e.time, _physical(msg.get("EVTargetCurrent")))
        status = msg.get("DC_EVStatus")
        if isinstance(status, dict):
            s.add("SoC", e.time, status.get("EVRESSSOC"))
    ordered = sorted(starts.items(), key=lambda item: item[1])
    # a phase lasts until the next one begins (the last one until its last message)
    for i, (phase, start) in enumerate(ordered):
        end = ordered[i + 1][1] if i + 1 < len(ordered) else ends[phase]
        s.phases.append((phase, start, end))
    return s


def load_series(path: Path) -> Series:
    if path.suffix.lower() == ".json":
        return series_from_log(load_log(str(path)), path.parent.name or path.name)
    return series_from_capture(path)


def build_figure(series: Series, width: float = 12.0, height: float = 7.0) -> Any:
    """The matplotlib figure: voltages and SoC on top, currents below, phases shaded on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_v, ax_i) = plt.subplots(2, 1, sharex=True, figsize=(width, height),
                                     gridspec_kw={"height_ratios": [3, 2]})
    for ax in (ax_v, ax_i):
        for i, (_name, start, end) in enumerate(series.phases):
            ax.axvspan(start, max(end, start + 0.05), color=PHASE_COLOURS[i % 2], zorder=0)
    for name in ("EVSE present voltage", "PEV inlet voltage", "battery voltage", "target voltage"):
        if name in series.values:
            ax_v.plot(series.t[name], series.values[name], label=name, color=LINE_COLOURS[name],
                      linestyle="--" if name == "target voltage" else "-")
    ax_v.set_ylabel("voltage (V)")
    ax_v.set_title(f"ccsbus session {series.title}")
    ax_soc = ax_v.twinx()
    if "SoC" in series.values:
        ax_soc.plot(series.t["SoC"], series.values["SoC"], color=LINE_COLOURS["SoC"], label="SoC",
                    linewidth=2)
    ax_soc.set_ylabel("SoC (%)")
    ax_soc.set_ylim(0, 100)
    for name in ("EVSE present current", "target current"):
        if name in series.values:
            ax_i.plot(series.t[name], series.values[name], label=name, color=LINE_COLOURS[name],
                      linestyle="--" if name == "target current" else "-")
    ax_i.set_ylabel("current (A)")
    ax_i.set_xlabel("time (s)")
    # phase names along the top of the voltage plot
    top = ax_v.get_ylim()[1]
    for name, start, end in series.phases:
        ax_v.text((start + end) / 2, top, name, rotation=90, va="top", ha="center", fontsize=7,
                  color="#555555")
    handles, labels = ax_v.get_legend_handles_labels()
    h2, l2 = ax_soc.get_legend_handles_labels()
    if handles or h2:
        ax_v.legend(handles + h2, labels + l2, loc="lower right", fontsize=8)
    if ax_i.get_legend_handles_labels()[0]:
        ax_i.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def render(series: Series, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = build_figure(series)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ccsbus plot",
        description="Plot a session (the simulation's session.json, or a pcap/pcapng capture) to a PNG: "
                    "voltages, currents and SoC over time with the session's phases shaded.")
    parser.add_argument("file", type=Path, help="session.json or a capture")
    parser.add_argument("-o", "--out", type=Path, help="PNG to write (default: beside the input, .png)")
    args = parser.parse_args(argv)
    out = args.out or args.file.with_suffix(".png")
    try:
        series = load_series(args.file)
    except (OSError, ValueError) as exc:
        print(f"ccsbus plot: {exc}", file=sys.stderr)
        return 2
    if not series.values:
        print(f"ccsbus plot: {args.file} holds no voltage, current or SoC values", file=sys.stderr)
        return 1
    render(series, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
