"""Write the results: a Markdown table, the raw figures as JSON, and a PNG chart.

The chart needs matplotlib (the optional ``bench`` extra); without it the
Markdown and JSON are still written and the chart is skipped with a note.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.figures import MIB, Figure, Results, rss_sizes, targets

STAGE_NAMES = {
    "stage_dedupe": "dedupe key (content hash)", "stage_parse": "parse", "stage_triage": "triage (screen, "
    "classify, authorize, schedule)", "stage_render": "render replies (Jinja2 + RFC 5322)",
    "stage_record": "record (intake transaction, render excluded)",
    "stage_send_bookkeeping": "claim + mark sent (per message)",
}


def write(results: Results, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "results.json", folder / "results.md"]
    written[0].write_text(json.dumps(results.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    chart = folder / "chart.png"
    note = draw(results, chart)
    if note is None:
        written.append(chart)
    written[1].write_text(markdown(results, chart.name if note is None else None, note), encoding="utf-8")
    return written


def summary(results: Results) -> str:
    lines = ["Target                                   Wanted            Measured        Met"]
    lines += [f"{t.name:40} {t.wanted:17} {t.measured:15} {'yes' if t.met else 'NO'}" for t in targets(results)]
    return "\n".join(lines)


# ---------------------------------------------------------------- Markdown


def _spread(f: Figure, fmt: str, scale: float = 1.0) -> str:
    if len(f.values) == 1:
        return format(f.median / scale, fmt)
    return f"{format(f.median / scale, fmt)} ({format(f.low / scale, fmt)}–{format(f.high / scale, fmt)})"


def markdown(r: Results, chart: str | None, note: str | None) -> str:
    meta = r.meta
    m, v, run = meta["machine"], meta["versions"], meta["run"]
    out = [
        f"# maild benchmark, {meta['date']}", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['os']}, Linux {m['kernel']}.  ",
        f"Software: maild {v['maild']}, Python {v['python']}, SQLite {v['sqlite']}, "
        f"PostgreSQL {v['postgresql']}, Dovecot {v['dovecot']}; " + ", ".join(
            f"{name} {v[name]}" for name in ("mail-parser", "imapclient", "SQLAlchemy", "psycopg", "Jinja2",
                                              "aiosmtpd")) + ".  ",
        f"Each figure is the median of {run['repeat']} run(s), with the spread (min–max) in brackets"
        + (" (quick smoke run: small sizes, not for quoting)." if run.get("quick") else "."),
        f"Total benchmark time: {meta.get('duration_s', 0):.0f} s.", "",
    ]
    out += _targets_table(r) + _rows_table(r) + _budget(r)
    if chart:
        out += [f"![maild benchmark]({chart})", ""]
    if note:
        out += [f"_{note}_", ""]
    return "\n".join(out)


def _targets_table(r: Results) -> list[str]:
    found = targets(r)
    if not found:
        return []
    rows = ["## Targets", "", "| Target | Wanted | Measured (median) | Met |", "|---|---|---|---|"]
    rows += [f"| {t.name} | {t.wanted} | {t.measured} | {'yes' if t.met else '**no**'} |" for t in found]
    return [*rows, ""]


def _rows_table(r: Results) -> list[str]:
    rows = ["## Figures", "", "| Measure | Median (min–max) |", "|---|---|"]

    def add(label: str, name: str, fmt: str, scale: float = 1.0, unit: str = "") -> None:
        f = r.get(name)
        if f is not None:
            rows.append(f"| {label} | {_spread(f, fmt, scale)}{unit} |")

    backlog = r.details.get("backlog", {})
    size = backlog.get("messages")
    if size:
        add(f"Floor: fetch + parse + one reply, {size:,} messages", "floor_rate", ".0f", unit=" msg/s")
        add("Floor + exactly-once bookkeeping, serial (yardstick)", "bookkeeping_rate", ".0f", unit=" msg/s")
        ratio = r.ratio("bookkeeping_rate", "floor_rate")
        if ratio:
            rows.append(f"| … ratio to the floor | {_spread(ratio, '.2f')} × |")
        add("maild `run --once`, SQLite", "backlog_sqlite_rate", ".0f", unit=" msg/s")
        ratio = r.ratio("backlog_sqlite_rate", "floor_rate")
        if ratio:
            rows.append(f"| … ratio to the floor | {_spread(ratio, '.2f')} × |")
        add("maild `run --once`, PostgreSQL", "backlog_postgresql_rate", ".0f", unit=" msg/s")
        ratio = r.ratio("backlog_postgresql_rate", "floor_rate")
        if ratio:
            rows.append(f"| … ratio to the floor | {_spread(ratio, '.2f')} × |")
        add("CPU per message: the floor's process", "cpu_floor", ".3f", unit=" ms")
        add("CPU per message: whole machine during the floor", "cpu_machine_floor", ".3f", unit=" ms")
        add("CPU per message: whole machine during floor + bookkeeping", "cpu_machine_bookkeeping", ".3f",
            unit=" ms")
        add("CPU per message: maild (SQLite, worker and sender processes included)", "cpu_sqlite", ".3f", unit=" ms")
        add("CPU per message: whole machine during maild (SQLite)", "cpu_machine_sqlite", ".3f", unit=" ms")
    add("Latency, delivery → reply, median", "latency_median", ".3f", unit=" s")
    add("Latency, delivery → reply, 95th percentile", "latency_p95", ".3f", unit=" s")
    add("Floor: Dovecot IDLE notification, median", "idle_median", ".3f", unit=" s")
    add("Floor: Dovecot IDLE notification, 95th percentile", "idle_p95", ".3f", unit=" s")
    for n in rss_sizes(r):
        add(f"Peak RSS, `run --once`, {n:,} messages (SQLite)", f"rss_messages_{n}", ".0f", MIB, " MiB")
    add("Peak RSS, `run --once`, PostgreSQL backlog", "rss_backlog_postgresql", ".0f", MIB, " MiB")
    add("Peak RSS, `run --once`, 1 message", "rss_single", ".0f", MIB, " MiB")
    add("Peak RSS, `run --once`, 1 message with a 25 MiB attachment", "rss_attachment", ".0f", MIB, " MiB")
    add("… added by the attachment", "rss_attachment_added", ".0f", 1e6, " MB")
    for name, label in STAGE_NAMES.items():
        add(f"Stage: {label}", name, ".3f", unit=" ms/msg")
    _web_rows(r, add)
    _refusal_rows(r, add)
    return [*rows, ""]


def _refusal_rows(r: Results, add: Callable[..., None]) -> None:
    """The SMTP server refusing some replies for now: how soon all are delivered, each exactly once."""
    refused = r.details.get("refusals", {})
    if not refused:
        return
    add(f"{refused['replies']:,} replies, 1 DATA in {refused['one_in']} refused (451): all delivered, from the "
        "daemon's start", "refusals_seconds", ".1f", unit=" s")
    add("… refusals meanwhile", "refusals_count", ".0f")
    add("… most refusals of one reply", "refusals_most", ".0f")
    add("… longest wait of one reply (first refusal → delivered)", "refusals_longest_wait", ".1f", unit=" s")
    add("… replies delivered twice", "refusals_duplicates", ".0f")


def _web_rows(r: Results, add: Callable[..., None]) -> None:
    """The web form's response time, and the daemon's intake alone and beside a stream of submissions."""
    web = r.details.get("web", {})
    if not web:
        return
    count, size, interval = web["submissions"], web["messages"], web["interval"]
    for database, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        add(f"Web form: a submission's response, {label}, median of {count}", f"web_{database}_median", ".1f",
            1e-3, " ms")
        add(f"Web form: a submission's response, {label}, 95th percentile", f"web_{database}_p95", ".1f", 1e-3, " ms")
    add(f"maild `run --once`, {size:,} messages, SQLite, alone (form idle)", "web_intake_alone_rate", ".0f",
        unit=" msg/s")
    add(f"… beside a submission every {interval:g} s", "web_intake_beside_rate", ".0f", unit=" msg/s")
    add("… ratio beside / alone (same repeat)", "web_intake_ratio", ".2f", unit=" ×")
    add("… maild's CPU per message, alone", "web_intake_alone_cpu", ".3f", unit=" ms")
    add("… maild's CPU per message, beside the form", "web_intake_beside_cpu", ".3f", unit=" ms")
    add("Web form: a submission's response while the daemon drains, median", "web_beside_median", ".1f", 1e-3,
        " ms")


STAGES = ("stage_dedupe", "stage_parse", "stage_triage", "stage_render", "stage_record", "stage_send_bookkeeping")


def _budget(r: Results) -> list[str]:
    """Why the backlog rate is what it is: CPU per message, measured, against what the cores allow."""
    floor, machine, own = r.get("floor_rate"), r.get("cpu_machine_sqlite"), r.get("cpu_sqlite")
    if floor is None or machine is None or own is None:
        return []
    cores = int(r.meta["machine"]["cores"] or 1)
    ceiling = cores * 1000 / machine.median
    floor_ms = 1000 / floor.median
    lines = [
        "## Budget", "",
        f"During maild's SQLite backlog the machine spent {machine.median:.2f} ms of CPU per message: "
        f"{own.median:.2f} ms in maild (its worker and sender processes included), "
        f"the rest in Dovecot, the SMTP sink and the kernel. "
        f"On {cores} cores that allows at most {ceiling:.0f} messages/s, "
        f"{ceiling / floor.median:.2f} × the floor, however well the work overlaps. Reaching 0.8 × the floor "
        f"needs at most {cores * floor_ms / 0.8:.2f} ms of CPU per message in total, servers included.",
    ]
    stages = [r.get(name) for name in STAGES]
    if all(f is not None for f in stages):
        spent = sum(f.median for f in stages if f is not None)
        lines.append(f"maild's own stages (table above, one thread, no network) add up to {spent:.2f} ms "
                     "per message.")
    return [*lines, ""]


# ---------------------------------------------------------------- chart


def draw(r: Results, path: Path) -> str | None:
    """The chart, or why there is none."""
    try:  # imported by name: an optional dependency, and mypy must pass without it
        importlib.import_module("matplotlib").use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "No chart: matplotlib is not installed (pip install -e '.[bench]')."
    panels = [p for p in (_throughput(r), _latency(r), _memory(r)) if p is not None]
    if not panels:
        return "No chart: no section was measured."
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (title, unit, bars, lines) in zip(axes[0], panels, strict=True):
        labels = [b[0] for b in bars]
        medians = [b[1].median for b in bars]
        errors = [[b[1].median - b[1].low for b in bars], [b[1].high - b[1].median for b in bars]]
        ax.bar(labels, medians, yerr=errors, capsize=4, color=[b[2] for b in bars])
        for value, label, style in lines:
            ax.axhline(value, linestyle=style, color="black", linewidth=1)
            ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8,
                        va="bottom")
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(f"maild benchmark, {r.meta['date']} ({r.meta['machine']['cores']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


Panel = tuple[str, str, list[tuple[str, Figure, str]], list[tuple[float, str, str]]]


def _throughput(r: Results) -> Panel | None:
    floor = r.get("floor_rate")
    bars = [(label, f, color) for label, f, color in (
        ("floor", floor, "grey"), ("maild SQLite", r.get("backlog_sqlite_rate"), "tab:blue"),
        ("maild PostgreSQL", r.get("backlog_postgresql_rate"), "tab:cyan")) if f is not None]
    if not bars:
        return None
    lines = [(0.8 * floor.median, "target 0.8 × floor", "--")] if floor is not None else []
    return "Backlog throughput", "messages / s", bars, lines


def _latency(r: Results) -> Panel | None:
    names = (("maild median", "latency_median", "tab:green"), ("maild p95", "latency_p95", "tab:olive"),
             ("IDLE median", "idle_median", "grey"), ("IDLE p95", "idle_p95", "lightgrey"))
    bars = [(label, f, color) for label, name, color in names if (f := r.get(name)) is not None]
    if not bars:
        return None
    return "Delivery → reply", "seconds", bars, [(0.8, "median target", "--"), (1.5, "p95 target", ":")]


def _memory(r: Results) -> Panel | None:
    bars: list[tuple[str, Figure, str]] = []
    single = r.get("rss_single")
    if single is not None:
        bars.append(("1 msg", _mib(single), "tab:purple"))
    for n in rss_sizes(r):
        f = r.get(f"rss_messages_{n}")
        assert f is not None
        bars.append((f"{n:,} msgs", _mib(f), "tab:red"))
    big = r.get("rss_attachment")
    if big is not None:
        bars.append(("25 MiB attachment", _mib(big), "tab:orange"))
    if not bars:
        return None
    lines: list[tuple[float, str, str]] = []
    if single is not None:
        lines.append((single.median / MIB + 100e6 / MIB, "1 msg + 100 MB", "--"))
    return "Peak RSS of run --once", "MiB", bars, lines


def _mib(f: Figure) -> Figure:
    return Figure(tuple(v / MIB for v in f.values))


if __name__ == "__main__":  # python -m bench.report [FOLDER]: redraw from FOLDER/results.json
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    loaded = Results.from_dict(json.loads((target / "results.json").read_text(encoding="utf-8")))
    print("\n".join(str(p) for p in write(loaded, target)))
