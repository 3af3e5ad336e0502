"""``make bench``: measure maild against the floor, on the real servers, and write the results.

    python -m bench.run [--repeat N] [--sizes 1000,10000] [--quick] [--sections ...]

Sections, each repeated ``--repeat`` times (runs of different kinds are
interleaved, so a slow minute of the machine hits all of them alike):

- ``backlog``: the floor and ``maild run --once`` on SQLite and PostgreSQL
  over the largest of ``--sizes`` messages; the SQLite runs also give the
  peak RSS at that size;
- ``latency``: delivery-to-reply time with the daemon idling;
- ``memory``: peak RSS of ``maild run --once`` at the other sizes, for one
  message, and for one message with a 25 MiB attachment;
- ``stages``: milliseconds per message of each intake stage (where the time goes);
- ``web``: the web form's response time per submission (SQLite and PostgreSQL),
  and ``maild run --once`` over a small backlog alone and beside a steady
  stream of submissions, alternated (does the form slow the intake?);
- ``refusals``: ``maild run`` answering 1,000 messages through an SMTP server
  that refuses one DATA in five for now: how soon every reply is delivered.

The full run writes ``bench/results/results.{md,json}`` and ``chart.png``;
``--quick`` (one repeat, small sizes) writes to ``var/bench/quick/`` instead,
so a smoke run never replaces the figures ``bench/README.md`` quotes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench import backlog, latency, machine, refusals, report, web
from bench.figures import MIB, Results
from bench.harness import server_env
from tests.factories import REPO
from tests.servers import ServerEnv

SECTIONS = ("backlog", "latency", "memory", "stages", "web", "refusals")
RESULTS = REPO / "bench" / "results"
QUICK_RESULTS = REPO / "var" / "bench" / "quick"
WORK = REPO / "var" / "bench" / "work"
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.repeat, args.sizes = 1, args.sizes or [200, 1000]
        args.latency_messages, args.stage_messages = min(args.latency_messages, 20), min(args.stage_messages, 300)
        args.web_submissions, args.web_backlog = min(args.web_submissions, 50), min(args.web_backlog, 1000)
        args.refusal_replies = min(args.refusal_replies, 300)
    sizes = sorted(set(args.sizes or [1000, 10_000]))
    out: Path = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    env = server_env()
    shutil.rmtree(WORK, ignore_errors=True)
    results = Results(meta=machine.describe(env, repeat=args.repeat, sizes=sizes, quick=args.quick))
    bench = _Bench(env, results, sizes, args)
    started = time.monotonic()
    for section in SECTIONS:
        if section in args.sections:
            getattr(bench, section)()
    results.meta["duration_s"] = round(time.monotonic() - started, 1)
    written = report.write(results, out)
    print(f"bench: done in {results.meta['duration_s']:.0f} s; wrote {', '.join(str(p) for p in written)}",
          file=sys.stderr)
    print(report.summary(results))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of every measurement (default 3)")
    parser.add_argument("--sizes", type=_sizes, default=None,
                        help="backlog sizes, comma separated (default 1000,10000); the largest is the backlog")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, sizes 200,1000")
    parser.add_argument("--sections", type=_sections, default=list(SECTIONS),
                        help=f"comma separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--latency-messages", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between two deliveries (latency)")
    parser.add_argument("--stage-messages", type=int, default=2000)
    parser.add_argument("--web-submissions", type=int, default=200, help="timed submissions of the web form")
    parser.add_argument("--web-backlog", type=int, default=2000,
                        help="messages of the backlog drained alone and beside the web form")
    parser.add_argument("--web-interval", type=float, default=0.5,
                        help="seconds between two submissions while the daemon drains the backlog")
    parser.add_argument("--refusal-replies", type=int, default=refusals.REPLIES,
                        help="replies sent through the SMTP server that refuses some for now")
    parser.add_argument("--refuse-one-in", type=int, default=refusals.ONE_IN,
                        help="that server refuses one DATA in N, at random (seeded by the repeat)")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    return parser


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes are whole numbers") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one positive size")
    return sizes


def _sections(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(sorted(unknown))}")
    return chosen


class _Bench:
    def __init__(self, env: ServerEnv, results: Results, sizes: list[int], args: argparse.Namespace) -> None:
        self.env = env
        self.results = results
        self.sizes = sizes
        self.args = args

    def _timed(self, label: str, index: int, run: Callable[[], T]) -> T:
        started = time.monotonic()
        value = run()
        print(f"bench: {label} [{index + 1}/{self.args.repeat}] {time.monotonic() - started:5.1f} s  "
              f"{_brief(value)}", file=sys.stderr)
        return value

    def _repeat(self, label: str, run: Callable[[int], T]) -> list[T]:
        return [self._timed(label, i, partial(run, i)) for i in range(self.args.repeat)]

    def backlog(self) -> None:
        size = self.sizes[-1]
        floors: list[backlog.FloorRun] = []
        books: list[backlog.BookkeepingRun] = []
        sqlite: list[backlog.MaildRun] = []
        pg: list[backlog.MaildRun] = []
        for i in range(self.args.repeat):  # interleaved: a slow minute hits all three alike
            floors.append(self._timed(f"floor {size}", i, partial(
                backlog.floor_run, self.env, WORK / f"floor-{i}", size)))
            books.append(self._timed(f"bookkeeping {size}", i, partial(
                backlog.bookkeeping_run, self.env, WORK / f"bookkeeping-{i}", size)))
            sqlite.append(self._timed(f"sqlite {size}", i, partial(
                backlog.backlog_run, self.env, WORK / f"sqlite-{i}", "sqlite", size)))
            pg.append(self._timed(f"postgresql {size}", i, partial(
                backlog.backlog_run, self.env, WORK / f"pg-{i}", "postgresql", size)))
        r = self.results
        r.add("floor_rate", [f.rate for f in floors])
        r.add("bookkeeping_rate", [b.rate for b in books])
        r.add("cpu_machine_bookkeeping", [b.machine_cpu_ms for b in books])
        r.add("backlog_sqlite_rate", [m.rate for m in sqlite])
        r.add("backlog_postgresql_rate", [m.rate for m in pg])
        r.add(f"rss_messages_{size}", [m.max_rss for m in sqlite])
        r.add("rss_backlog_postgresql", [m.max_rss for m in pg])
        r.add("cpu_floor", [f.cpu_ms for f in floors])
        r.add("cpu_machine_floor", [f.machine_cpu_ms for f in floors])
        r.add("cpu_sqlite", [m.cpu_ms for m in sqlite])
        r.add("cpu_machine_sqlite", [m.machine_cpu_ms for m in sqlite])
        r.details["backlog"] = {"messages": size, "floor": [asdict(f) for f in floors],
                                "bookkeeping": [asdict(b) for b in books],
                                "sqlite": [asdict(m) for m in sqlite], "postgresql": [asdict(m) for m in pg]}

    def latency(self) -> None:
        count, interval = self.args.latency_messages, self.args.interval
        runs = self._repeat(f"latency {count} messages", lambda i: latency.latency_run(
            self.env, WORK / f"latency-{i}", count, interval))
        r = self.results
        r.add("latency_median", [x.median for x in runs])
        r.add("latency_p95", [x.p95 for x in runs])
        r.add("idle_median", [x.idle_median for x in runs])
        r.add("idle_p95", [x.idle_p95 for x in runs])
        r.details["latency"] = [asdict(x) for x in runs]

    def memory(self) -> None:
        r = self.results
        details: dict[str, Any] = {}
        for size in self.sizes[:-1] if "backlog" in self.args.sections else self.sizes:
            def sized(i: int, size: int = size) -> backlog.MaildRun:
                return backlog.backlog_run(self.env, WORK / f"memory-{size}-{i}", "sqlite", size)

            runs = self._repeat(f"memory {size} messages", sized)
            r.add(f"rss_messages_{size}", [m.max_rss for m in runs])
            details[str(size)] = [asdict(m) for m in runs]
        single = self._repeat("memory 1 message", lambda i: backlog.single_run(self.env, WORK / f"single-{i}"))
        big = self._repeat("memory 25 MiB attachment", lambda i: backlog.attachment_run(
            self.env, WORK / f"attachment-{i}"))
        r.add("rss_single", [m.max_rss for m in single])
        r.add("rss_attachment", [m.max_rss for m in big])
        r.add("rss_attachment_added", [b.max_rss - s.max_rss for b, s in zip(big, single, strict=True)])
        details["single"] = [asdict(m) for m in single]
        details["attachment"] = [asdict(m) for m in big]
        r.details["memory"] = details

    def stages(self) -> None:
        count = self.args.stage_messages

        def one(i: int) -> dict[str, float]:
            out = WORK / f"stages-{i}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "bench.stages", str(count), str(out)], cwd=REPO, check=True)
            data: dict[str, float] = json.loads(out.read_text())
            return data

        runs = self._repeat(f"stages {count} messages", one)
        for stage in ("dedupe", "parse", "triage", "render", "record", "send_bookkeeping"):
            self.results.add(f"stage_{stage}", [x[stage] for x in runs])
        self.results.details["stages"] = runs

    def web(self) -> None:
        count, size, interval = self.args.web_submissions, self.args.web_backlog, self.args.web_interval
        sqlite: list[web.WebRun] = []
        pg: list[web.WebRun] = []
        pairs: list[web.IntakePair] = []
        for i in range(self.args.repeat):  # interleaved, and the pair's order alternated
            sqlite.append(self._timed(f"web form sqlite {count}", i, partial(
                web.submissions_run, self.env, WORK / f"web-sqlite-{i}", "sqlite", count)))
            pg.append(self._timed(f"web form postgresql {count}", i, partial(
                web.submissions_run, self.env, WORK / f"web-pg-{i}", "postgresql", count)))
            pairs.append(self._timed(f"intake {size} alone / beside the form", i, partial(
                web.intake_pair, self.env, WORK / f"web-intake-{i}", size, interval, beside_first=i % 2 == 1)))
        r = self.results
        r.add("web_sqlite_median", [x.median for x in sqlite])
        r.add("web_sqlite_p95", [x.p95 for x in sqlite])
        r.add("web_postgresql_median", [x.median for x in pg])
        r.add("web_postgresql_p95", [x.p95 for x in pg])
        r.add("web_intake_alone_rate", [p.alone_rate for p in pairs])
        r.add("web_intake_beside_rate", [p.beside_rate for p in pairs])
        r.add("web_intake_ratio", [p.ratio for p in pairs])
        r.add("web_beside_median", [p.beside_median for p in pairs])
        r.add("web_intake_alone_cpu", [p.alone_cpu_ms for p in pairs])
        r.add("web_intake_beside_cpu", [p.beside_cpu_ms for p in pairs])
        r.details["web"] = {"submissions": count, "messages": size, "interval": interval,
                            "sqlite": [asdict(x) for x in sqlite], "postgresql": [asdict(x) for x in pg],
                            "intake": [{**asdict(p), "ratio": p.ratio} for p in pairs]}

    def refusals(self) -> None:
        count, one_in = self.args.refusal_replies, self.args.refuse_one_in
        runs = self._repeat(f"refusals {count} replies, 1 DATA in {one_in} refused", lambda i: refusals.refusals_run(
            self.env, WORK / f"refusals-{i}", replies=count, one_in=one_in, seed_value=i))
        r = self.results
        r.add("refusals_seconds", [x.seconds for x in runs])
        r.add("refusals_count", [x.refusals for x in runs])
        r.add("refusals_most", [x.most_refusals for x in runs])
        r.add("refusals_longest_wait", [x.longest_wait for x in runs])
        r.add("refusals_duplicates", [x.duplicates for x in runs])
        r.details["refusals"] = {"replies": count, "one_in": one_in, "runs": [asdict(x) for x in runs]}


def _brief(value: Any) -> str:
    if isinstance(value, backlog.FloorRun | backlog.BookkeepingRun | backlog.MaildRun):
        return (f"{value.rate:7.0f} msg/s  cpu {value.cpu_ms:.2f} ms/msg (machine {value.machine_cpu_ms:.2f})"
                + (f"  rss {value.max_rss / MIB:.0f} MiB" if isinstance(value, backlog.MaildRun) else ""))
    if isinstance(value, latency.LatencyRun):
        return f"median {value.median:.3f} s  p95 {value.p95:.3f} s  (IDLE {value.idle_median:.3f} s)"
    if isinstance(value, web.WebRun):
        return f"{value.submissions} submissions  median {value.median * 1000:.1f} ms  p95 {value.p95 * 1000:.1f} ms"
    if isinstance(value, web.IntakePair):
        return (f"alone {value.alone_rate:.0f} msg/s  beside {value.beside_rate:.0f} msg/s  = {value.ratio:.2f} ×  "
                f"({value.submissions} submissions, median {value.beside_median * 1000:.1f} ms)  "
                f"maild cpu {value.alone_cpu_ms:.2f} / {value.beside_cpu_ms:.2f} ms/msg")
    if isinstance(value, refusals.RefusalRun):
        return refusals.brief(value)
    if isinstance(value, dict):
        return "  ".join(f"{k} {v:.3f}" for k, v in value.items() if isinstance(v, float))
    return ""


if __name__ == "__main__":
    sys.exit(main())
