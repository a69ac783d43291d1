"""The terminal side of `ccsbus sim`: a live panel (rich) or plain lines, and the final summary."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .session import PHASE_ORDER, Phase, SessionRecorder

if TYPE_CHECKING:
    from .sim import SimOptions, SimResult, Simulation


def _num(value: Any, unit: str, digits: int = 1) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f} {unit}"
    return "-"


def status_panel(rec: SessionRecorder, opts: SimOptions, elapsed: float) -> Panel:
    p = rec.present
    phases = Text()
    current = rec.phase
    for phase in PHASE_ORDER:
        style = "bold green" if phase is current else ("green" if phase.value in rec.seen() else "dim")
        phases.append(phase.value, style=style)
        if phase is not PHASE_ORDER[-1]:
            phases.append(" > ", style="dim")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("protocol", rec.protocol or opts.protocol, "elapsed", f"{elapsed:6.1f} s")
    grid.add_row("EVSE output", f"{_num(p.get('EVSE.hw.present_voltage'), 'V')}  "
                                f"{_num(p.get('EVSE.hw.present_current'), 'A')}",
                 "car request", f"{_num(p.get('EVSE.target_voltage'), 'V')}  "
                                f"{_num(p.get('EVSE.target_current'), 'A')}")
    grid.add_row("PEV inlet", _num(p.get("PEV.inlet_voltage", p.get("PEV.hw.inlet_voltage")), "V"),
                 "battery", _num(p.get("PEV.battery_voltage"), "V"))
    grid.add_row("contactors", f"EVSE {p.get('EVSE.hw.contactors', '-')}  PEV {p.get('PEV.hw.contactors', '-')}",
                 "lock", str(p.get("PEV.hw.lock", "-")))
    grid.add_row("SLAC", f"EVSE {rec.slac_state.get('EVSE', '-')}  PEV {rec.slac_state.get('PEV', '-')}",
                 "V2G", f"EVSE {rec.fsm_state.get('EVSE', '-')}  PEV {rec.fsm_state.get('PEV', '-')}")
    last = rec.messages[-1] if rec.messages else None
    lat = [m for m in rec.messages if m.latency_ms is not None]
    grid.add_row("last message", f"{last.side} {last.direction} {last.name}" if last else "-",
                 "latency", f"{lat[-1].latency_ms:.1f} ms ({lat[-1].name})" if lat else "-")
    soc = rec.soc
    bar = ProgressBar(total=100, completed=soc or 0, width=40)
    soc_line = Table.grid(padding=(0, 2))
    soc_line.add_row(Text("SoC", style="bold"), bar,
                     Text(f"{soc:5.1f} % -> {opts.target_soc:g} %" if soc is not None else "-"))
    return Panel(Group(phases, grid, soc_line), title="ccsbus sim", border_style="cyan")


def summary_table(result: SimResult) -> Table:
    rec = result.recorder
    table = Table(title="session ended normally" if result.ok else f"session FAILED: {result.reason}",
                  title_style="bold green" if result.ok else "bold red")
    table.add_column("phase")
    table.add_column("start s", justify="right")
    table.add_column("duration s", justify="right")
    for span in rec.phases:
        end = span.end if span.end is not None else span.start
        table.add_row(span.phase, f"{span.start:.2f}", f"{end - span.start:.2f}")
    return table


def latency_table(rec: SessionRecorder) -> Table:
    table = Table(title="message latency (ms)")
    for col in ("message", "count", "median", "p95", "max"):
        table.add_column(col, justify="left" if col == "message" else "right")
    for name, stats in rec.latencies().items():
        table.add_row(name, str(int(stats["count"])), f"{stats['median']:.1f}", f"{stats['p95']:.1f}",
                      f"{stats['max']:.1f}")
    return table


def rss_table(result: SimResult) -> Table:
    table = Table(title="resident memory (MiB)")
    for col in ("process", "start", "end", "exit"):
        table.add_column(col, justify="left" if col == "process" else "right")

    def mib(v: int | None) -> str:
        return "-" if v is None else f"{v / 1024:.1f}"

    for name in sorted(set(result.rss_start) | set(result.rss_end)):
        table.add_row(name, mib(result.rss_start.get(name)), mib(result.rss_end.get(name)),
                      str(result.exit_codes.get(name, "-")))
    return table


class SimView:
    """Live panel on a terminal; one line per phase otherwise (`--plain`, CI, pipes)."""

    def __init__(self, opts: SimOptions, console: Console | None = None) -> None:
        self.opts = opts
        self.console = console or Console()
        self.live: Live | None = None
        self.last_phase: Phase | None = None

    def __enter__(self) -> SimView:
        if not self.opts.plain:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        else:
            self.console.print(f"ccsbus sim: protocol {self.opts.protocol}, target SoC "
                               f"{self.opts.target_soc:g} %, speed x{self.opts.speed:g}")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)
            self.live = None

    def phase_changed(self, phase: Phase, t: float) -> None:
        if self.live is None:
            self.console.print(f"{t:7.2f} s  {phase.value}")

    def round_done(self, info: dict[str, Any]) -> None:
        rss = sum(v or 0 for v in info["rss_kib"].values()) / 1024
        line = (f"session {info['session']}: {info['result']} ({info['reason']}), "
                f"{info['seconds']:.1f} s, processes {rss:.0f} MiB")
        if self.live is not None:
            self.live.console.print(line)
        else:
            self.console.print(line)

    def update(self, sim: Simulation, t: float) -> None:
        if self.live is not None:
            self.live.update(status_panel(sim.recorder, self.opts, t))

    def summary(self, result: SimResult) -> None:
        self.console.print(summary_table(result))
        if result.recorder.latencies():
            self.console.print(latency_table(result.recorder))
        self.console.print(rss_table(result))
        self.console.print(f"results in {result.out}/ (session.json, session.pcap, logs/)")
