"""The triage worker process gives exactly the in-process triage, and survives its own death.

These start a real worker process (spawned, as the daemon does).
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime

import pytest

from maild.intake import Triaged, triage
from maild.pipeline import Triager
from maild.records import Disposition, ParsedMessage
from maild.workers import SHIP_MAX_BYTES, TriagePool, triage_batch
from tests.daemon_kit import HIGH_LIMITS
from tests.factories import settings
from tests.hostile import big_attachment
from tests.mailgen import corpus_mix

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
    def decide(self, message: ParsedMessage, *, received_at: datetime) -> Disposition:
        if "BOOM" in message.subject:
            raise RuntimeError("a rule blew up")
        return super().decide(message, received_at=received_at)


def test_a_message_whose_triage_raises_comes_back_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the worker returns for a poison message: None, so the main process re-runs and quarantines it."""
    monkeypatch.setattr("maild.workers._triager", lambda _settings: _Exploding.from_settings(CONFIG))
    raws = [s.raw for s in corpus_mix(3, tag="boom")]
    raws[1] = raws[1].replace(b"Subject: ", b"Subject: BOOM ", 1)
    got = triage_batch(raws, NOW, CONFIG)
    assert got[0] is not None and got[1] is None and got[2] is not None


def test_a_batch_the_worker_cannot_hand_back_is_triaged_here(pool: TriagePool) -> None:
    failed: Future[list[Triaged | None]] = Future()
    failed.set_exception(pickle.PicklingError("cannot pickle"))
    assert pool.result(failed, 2) == [None, None]
    assert pool.ready()  # the worker itself is fine and stays
