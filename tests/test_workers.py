"""The triage worker process gives exactly the in-process triage, and survives its own death.

These start a real worker process: spawned here (this process has threads), forked by
``maild run`` at start (see the last tests).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.certified import PecRead
from maild.daemon.intake import Triaged, triage
from maild.daemon.processes import SHIP_MAX_BYTES, TriagePool, triage_batch
from maild.pipeline import Triager
from maild.records import Address, Attachment, Disposition, ParsedMessage, TakeIn, ThreadQuery, pickled_by_fields
from tests.daemon_kit import HIGH_LIMITS
from tests.factories import REPO, settings
from tests.hostile import big_attachment
from tests.mailgen import corpus_mix
from tests.servers import wait_until

NOW = datetime(2027, 1, 18, 10, 0, tzinfo=UTC)
CONFIG = settings(limits=HIGH_LIMITS)


@pytest.fixture(scope="module")
def pool() -> Iterator[TriagePool]:
    started = TriagePool(CONFIG)
    yield started
    started.close()


def test_the_worker_triages_exactly_like_this_process(pool: TriagePool) -> None:
    raws = [s.raw for s in corpus_mix(120, tag="worker")]
    here = Triager.from_settings(CONFIG)
    got = pool.result(pool.submit(raws, NOW), len(raws))
    assert got == [triage(raw, NOW, here, CONFIG) for raw in raws]
    assert all(t is not None for t in got)


def test_large_and_missing_messages_are_left_to_this_process(pool: TriagePool) -> None:
    small = corpus_mix(1, tag="small")[0].raw
    large = big_attachment(SHIP_MAX_BYTES + 1)
    assert len(large) > SHIP_MAX_BYTES
    got = pool.result(pool.submit([small, large, None], NOW), 3)
    assert got[0] is not None and got[1:] == [None, None]


def test_a_worker_that_dies_is_replaced_and_its_batch_left_to_this_process() -> None:
    pool = TriagePool(CONFIG)
    try:
        raws = [s.raw for s in corpus_mix(3, tag="dying")]
        assert all(pool.result(pool.submit(raws, NOW), 3))
        for pid in pool.worker_pids():
            os.kill(pid, signal.SIGKILL)
        assert pool.result(pool.submit(raws, NOW), 3) == [None, None, None]
        assert all(pool.result(pool.submit(raws, NOW), 3))  # a new worker took over
    finally:
        pool.close()


class _Exploding(Triager):
    def decide(self, message: ParsedMessage, *, received_at: datetime, pec: PecRead | None = None,
               received_why: str = "") -> Disposition:
        if "BOOM" in message.subject:
            raise RuntimeError("a rule blew up")
        return super().decide(message, received_at=received_at, pec=pec, received_why=received_why)


def test_a_message_whose_triage_raises_comes_back_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the worker returns for a poison message: None, so the main process re-runs and quarantines it."""
    monkeypatch.setattr("maild.daemon.processes._triager", lambda _settings: _Exploding.from_settings(CONFIG))
    raws = [s.raw for s in corpus_mix(3, tag="boom")]
    raws[1] = raws[1].replace(b"Subject: ", b"Subject: BOOM ", 1)
    got = triage_batch(raws, NOW, CONFIG)
    assert got[0] is not None and got[1] is None and got[2] is not None


def test_a_batch_the_worker_cannot_hand_back_is_triaged_here(pool: TriagePool) -> None:
    failed: Future[list[Triaged | None]] = Future()
    failed.set_exception(pickle.PicklingError("cannot pickle"))
    assert pool.result(failed, 2) == [None, None]
    assert pool.ready()  # the worker itself is fine and stays


def _records(value: object) -> list[object]:
    """``value`` and every dataclass object inside it, however deep (in fields and tuples)."""
    if isinstance(value, tuple):
        return [r for item in value for r in _records(item)]
    if not is_dataclass(value):
        return []
    return [value, *(r for f in fields(value) for r in _records(getattr(value, f.name)))]


def test_the_triage_result_crosses_processes_as_calls_of_its_classes_and_comes_back_equal() -> None:
    raws = [s.raw for s in corpus_mix(120, tag="pickle")] + [p.read_bytes() for p in (REPO / "examples").glob("*.eml")]
    got = triage_batch(raws, NOW, CONFIG)
    assert pickle.loads(pickle.dumps(got, protocol=pickle.HIGHEST_PROTOCOL)) == got
    records = _records(tuple(got))
    assert {type(r) for r in records} == {Triaged, Disposition, ParsedMessage, Address, Attachment, TakeIn,
                                          ThreadQuery}
    for record in records:
        assert "__reduce__" in type(record).__dict__, type(record)
        assert pickle.loads(pickle.dumps(record)) == record


def test_only_a_class_its_init_rebuilds_exactly_pickles_by_fields() -> None:
    @dataclass(frozen=True)
    class Computed:
        a: int
        b: int = field(init=False, default=0)

    @dataclass(frozen=True)
    class Checked:
        a: int
        b: int

        def __post_init__(self) -> None:
            object.__setattr__(self, "b", self.a)

    for refused in (Computed, Checked):
        with pytest.raises(TypeError):
            pickled_by_fields(refused)


def test_the_worker_ignores_the_signals_meant_for_the_daemon(pool: TriagePool) -> None:
    """Ctrl-C reaches the whole process group and systemd signals the whole cgroup: the daemon
    finishes its batch and closes the pool, so the worker must not die first."""
    raws = [s.raw for s in corpus_mix(2, tag="signals")]
    (pid,) = pool.worker_pids()
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    assert all(pool.result(pool.submit(raws, NOW), 2))
    assert pool.worker_pids() == (pid,)


_ORPHAN = """
import time
from maild.daemon.processes import TriagePool
from tests.factories import REPO, settings
if __name__ == "__main__":
    pool = TriagePool(settings())
    print(pool.worker_pids()[0], flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_worker_whose_daemon_is_killed_exits(tmp_path: Path) -> None:
    script = tmp_path / "daemon.py"
    script.write_text(_ORPHAN, encoding="utf-8")
    daemon = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert daemon.stdout is not None
    worker = int(daemon.stdout.readline())
    assert _alive(worker)
    daemon.kill()
    daemon.wait()
    daemon.stdout.close()
    assert wait_until(lambda: not _alive(worker), timeout=20)


HEAVY = ("sqlalchemy", "alembic", "imapclient", "apscheduler", "maild.daemon.wiring", "maild.store.core")
"""The database layer, the IMAP and scheduler libraries, the daemon's wiring: none is the worker's business."""


def test_importing_the_worker_module_loads_no_database_mailbox_or_scheduler_code() -> None:
    code = f"import sys, maild.daemon.processes; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


_WORKER_MODULES = """
import sys
from maild.cli import main  # as the `maild` script does: the spawned worker re-imports this module, so maild.cli

HEAVY = {heavy!r}


def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)


if __name__ == "__main__":
    from datetime import UTC, datetime
    from maild.daemon.processes import TriagePool
    from tests.factories import REPO, settings
    pool = TriagePool(settings())
    raw = (REPO / "examples" / "01-quota-it.eml").read_bytes()
    assert pool.result(pool.submit([raw], datetime.now(UTC)), 1)[0] is not None
    print(pool._executor.submit(loaded).result(), flush=True)
    pool.close()
"""


def test_the_spawned_worker_triages_without_loading_database_mailbox_or_scheduler_code(tmp_path: Path) -> None:
    """What the daemon's worker process holds after starting and triaging a batch, started the way
    ``maild run`` starts it (the main module is maild.cli, which the spawned worker re-imports)."""
    script = tmp_path / "maild_script.py"
    script.write_text(_WORKER_MODULES.format(heavy=HEAVY), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"



_FORKED = """
import os
from datetime import UTC, datetime
from maild.pipeline import Triager
from maild.daemon.processes import TriagePool
from tests.factories import REPO, settings


class Marking(Triager):
    # Rules only the daemon has: a worker compiling its own from the settings would not mark.
    def decide(self, message, *, received_at, pec=None):
        raise RuntimeError("the daemon's own rules ran")


if __name__ == "__main__":
    config, dropped = settings(), []
    pool = TriagePool(config, Marking.from_settings(config), lambda: dropped.append(os.getpid()))
    raw = (REPO / "examples" / "01-quota-it.eml").read_bytes()
    print(pool.result(pool.submit([raw], datetime.now(UTC)), 1), dropped == [os.getpid()], flush=True)
    pool.close()
"""


def test_a_worker_forked_from_a_single_thread_uses_the_daemons_compiled_rules(tmp_path: Path) -> None:
    """Forked, the worker triages with the rules object the daemon compiled (no second compile),
    after the daemon dropped its database connections."""
    script = tmp_path / "daemon.py"
    script.write_text(_FORKED, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[None] True"  # the marking rules raised in the worker: None comes back


_FORKED_LAZY = """
import os
from dataclasses import replace
from datetime import UTC, datetime
from maild.errors import RulesError
from maild.pipeline import Triager
from maild.daemon.processes import TriagePool
from tests.factories import REPO, settings


def every_template(triager):
    return [*triager.rules.adoption.phrases, *(template for _rule, template in triager.rules.templates)]


if __name__ == "__main__":
    config = settings()
    lazy = Triager.from_settings(config, compiled=False)
    pool = TriagePool(config, lazy, lambda: None)
    pool.started()
    raw = (REPO / "examples" / "01-quota-it.eml").read_bytes()
    [triaged] = pool.result(pool.submit([raw], datetime.now(UTC)), 1)
    pool.close()
    here = any(template.compiled for template in every_template(lazy))
    eager = Triager.from_settings(config).triage(raw, now=datetime.now(UTC))
    print(pool.forked, here, triaged.disposition.category is eager.category, flush=True)

    rule, template = lazy.rules.templates[0]
    broken = replace(lazy.rules, templates=((rule, replace(template, source="(")), *lazy.rules.templates[1:]))
    pool = TriagePool(config, replace(lazy, rules=broken), lambda: None)
    try:
        pool.started()
    except RulesError as exc:
        print("stopped:", exc, flush=True)
    try:
        pool.check()
    except RulesError:
        print("and check() says so without waiting", flush=True)
    pool.close()
"""


def test_a_forked_worker_compiles_the_rules_the_daemon_left_uncompiled_and_a_bad_one_stops_the_start(
        tmp_path: Path) -> None:
    """The daemon loads the rules without compiling their templates; its forked worker compiles
    them (while the daemon connects to the mailbox) and triages as compiled rules do. A template
    that does not compile there stops the daemon (``TriagePool.started``, or ``check`` for a daemon
    that does not wait for its worker), naming it."""
    script = tmp_path / "daemon.py"
    script.write_text(_FORKED_LAZY, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    first, second, third = done.stdout.strip().splitlines()
    assert first == "True False True"  # forked; nothing compiled in the daemon; the same triage
    assert second.startswith("stopped: ") and "rule[0]" in second and "invalid regular expression" in second
    assert third == "and check() says so without waiting"
