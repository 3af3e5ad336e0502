"""The triage stage's cost in machine instructions, which a loaded machine does not change.

Wall and CPU time of the same code vary by a tenth or more from one run to the next on a shared
machine; the number of instructions it executes does not. ``python -m bench.instructions`` runs
the triage stage (screen, classify, authorize, schedule) over the corpus mix under valgrind's
callgrind twice, once with no pass and once with ``PASSES`` passes, and prints the difference per
message: start-up, imports and parsing cancel out. Needs valgrind (``apt install valgrind``); it
is not part of ``make bench``. ``--passes N`` runs the passes without valgrind (what it measures).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from maild.mail.parsing import parse_message
from maild.pipeline import Triager
from tests.factories import settings
from tests.mailgen import corpus_mix

MESSAGES = 120
"""Two turns of the 60-message corpus mix."""
PASSES = 2
_COLLECTED = re.compile(rb"Collected : (\d+)")
_REPO = Path(__file__).resolve().parent.parent


def run_passes(passes: int, *, rules_alone: bool = False) -> None:
    """Decide the corpus mix once to warm up, then ``passes`` more times (without the word model if
    ``rules_alone``)."""
    config = settings(triage={"word_model": False}) if rules_alone else settings()
    triager = Triager.from_settings(config)
    now = datetime(2027, 1, 18, 10, tzinfo=UTC)
    messages = [parse_message(sample.raw, config.limits) for sample in corpus_mix(MESSAGES, tag="instructions")]
    for _ in range(1 + passes):
        for message in messages:
            triager.decide(message, received_at=now)


def instructions(passes: int, *, rules_alone: bool = False) -> int:
    """Instructions valgrind counts for a whole run of ``--passes passes``."""
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={Path(folder) / 'out'}",
             sys.executable, "-m", "bench.instructions", "--passes", str(passes),
             *(["--rules-alone"] if rules_alone else [])],
            capture_output=True, check=True, cwd=_REPO, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no count: {done.stderr[-500:]!r}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, help="run the passes without valgrind")
    parser.add_argument("--rules-alone", action="store_true", help="without the word model")
    args = parser.parse_args(argv)
    if args.passes is not None:
        run_passes(args.passes, rules_alone=args.rules_alone)
        return 0
    if shutil.which("valgrind") is None:
        print("bench.instructions: valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    spent = instructions(PASSES, rules_alone=args.rules_alone) - instructions(0, rules_alone=args.rules_alone)
    alone = ", without the word model" if args.rules_alone else ""
    print(f"triage: {spent / (PASSES * MESSAGES) / 1000:.0f} k instructions a message "
          f"({PASSES} passes over {MESSAGES} messages of the corpus mix{alone})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
