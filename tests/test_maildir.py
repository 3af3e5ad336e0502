"""MaildirSource and MaildirSink on a temporary directory."""

from __future__ import annotations

import mailbox
import os
import threading
from pathlib import Path

import pytest

from maild.daemon.outbox.transport import make_transport
from maild.daemon.wiring import make_source
from maild.errors import TransportUnavailable
from maild.mail.maildir import MaildirSink, MaildirSource, file_name
from maild.records import OutgoingMail
from tests.factories import settings
from tests.fakes import FakeTime
from tests.servers import make_message

HANG_GUARD = 30.0


def deliver(inbox: Path, name: str, data: bytes, *, sub: str = "new", mtime: int | None = None) -> Path:
    """Deliver the way an MTA does: write in tmp/, rename into place."""
    tmp = inbox / "tmp" / name
    tmp.write_bytes(data)
    target = inbox / sub / name
    tmp.rename(target)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return target


def source_at(tmp_path: Path, fake: FakeTime | None = None) -> MaildirSource:
    inbox = tmp_path / "inbox"
    if fake is None:
        return MaildirSource(inbox, inbox / ".Processed", inbox / ".Quarantine")
    return MaildirSource(inbox, inbox / ".Processed", inbox / ".Quarantine",
                         sleep=fake.sleep, clock=fake.clock)


def test_fetch_reads_new_and_cur_oldest_first_and_skips_what_is_not_mail(tmp_path: Path) -> None:
    source = source_at(tmp_path)
    inbox = source.path
    first, second, third = make_message(1), make_message(2), make_message(3)
    deliver(inbox, "1700000003.M3.host", third, mtime=1_700_000_003)
    deliver(inbox, "1700000001.M1.host:2,S", first, sub="cur", mtime=1_700_000_001)
    deliver(inbox, "1700000002.M2.host", second, mtime=1_700_000_002)
    (inbox / "new" / ".hidden").write_bytes(b"not mail")
    (inbox / "tmp" / "half-written").write_bytes(b"From: x")
    items = list(source.fetch(10_000))
    assert [(i.source_id, i.raw, i.size, i.folder_state) for i in items] == [
        ("1700000001.M1.host", first, len(first), ""),
        ("1700000002.M2.host", second, len(second), ""),
        ("1700000003.M3.host", third, len(third), ""),
    ]


def test_oversize_file_is_not_read(tmp_path: Path) -> None:
    source = source_at(tmp_path)
    big = make_message(1, body_size=5_000)
    deliver(source.path, "big", big)
    (item,) = source.fetch(1_000)
    assert item.raw is None and item.size == len(big)


def test_processed_and_quarantined_mail_lands_in_maildirplusplus_subfolders(tmp_path: Path) -> None:
    source = source_at(tmp_path)
    deliver(source.path, "a", make_message(1))
    deliver(source.path, "b", make_message(2), sub="cur")
    os.rename(source.path / "cur" / "b", source.path / "cur" / "b:2,F")
    first, second = source.fetch(10_000)
    source.mark_processed(first)
    source.quarantine(second)
    assert list(source.fetch(10_000)) == []
    assert sorted(os.listdir(source.path / ".Processed" / "cur")) == ["a:2,S"]
    assert sorted(os.listdir(source.path / ".Quarantine" / "cur")) == ["b:2,FS"]
    inbox = mailbox.Maildir(source.path, create=False)  # the layout mailbox.Maildir and Dovecot read
    assert sorted(inbox.list_folders()) == ["Processed", "Quarantine"]
    assert len(inbox.get_folder("Processed")) == 1
    assert len(inbox) == 0


def test_filing_follows_a_message_a_client_moved_from_new_to_cur(tmp_path: Path) -> None:
    source = source_at(tmp_path)
    deliver(source.path, "m1", make_message(1))
    (item,) = source.fetch(10_000)
    os.rename(source.path / "new" / "m1", source.path / "cur" / "m1:2,S")
    source.mark_processed(item)
    assert os.listdir(source.path / ".Processed" / "cur") == ["m1:2,S"]


def test_filing_twice_is_harmless(tmp_path: Path) -> None:
    source = source_at(tmp_path)
    deliver(source.path, "m1", make_message(1))
    (item,) = source.fetch(10_000)
    source.mark_processed(item)
    source.mark_processed(item)
    source.quarantine(item)
    assert os.listdir(source.path / ".Processed" / "cur") == ["m1:2,S"]
    assert os.listdir(source.path / ".Quarantine" / "cur") == []


def test_wait_notices_a_delivery_from_another_thread(tmp_path: Path) -> None:
    source = source_at(tmp_path)
    assert list(source.fetch(10_000)) == []
    delivery = threading.Timer(0.3, deliver, (source.path, "late", make_message(1)))
    delivery.start()
    try:
        assert source.wait(HANG_GUARD) is True
    finally:
        delivery.cancel()
        delivery.join()
    assert [i.source_id for i in source.fetch(10_000)] == ["late"]


def test_wait_times_out_and_ignores_mail_already_fetched(tmp_path: Path) -> None:
    fake = FakeTime(start=0.0)
    source = source_at(tmp_path, fake)
    deliver(source.path, "old", make_message(1))
    assert source.wait(5.0) is True  # never fetched: work to do
    assert len(list(source.fetch(10_000))) == 1
    assert source.wait(5.0) is False  # fetched but not filed: no reason to wake
    assert fake.now == pytest.approx(5.0)  # the first wait returned at once
    assert max(fake.sleeps) <= 0.2 + 1e-9


def test_make_source_uses_subfolders_named_by_the_settings(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    built = make_source(settings(mailbox={"kind": "maildir", "path": str(inbox),
                                          "processed_folder": "Evase", "quarantine_folder": "Sospese"}))
    assert isinstance(built, MaildirSource)
    assert (built.processed_dir, built.quarantine_dir) == (inbox / ".Evase", inbox / ".Sospese")
    assert (inbox / ".Evase" / "maildirfolder").exists()


# ---------------------------------------------------------------- sink


def reply(message_id: str = "<r1@helpdesk.example.it>", body: str = "Gentile utente", *,
          first_attempt: bool = False) -> OutgoingMail:
    data = (f"From: Help Desk <helpdesk@servizi.example.it>\r\nTo: a@ateneo.example.it\r\n"
            f"Message-ID: {message_id}\r\nAuto-Submitted: auto-replied\r\n\r\n{body}\r\n").encode()
    return OutgoingMail(kind="ack", message_id=message_id, envelope_from="",
                        recipients=("a@ateneo.example.it", "b@ateneo.example.it"), data=data,
                        first_attempt=first_attempt)


def test_sink_delivers_atomically_with_the_envelope_prepended(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "sent")
    mail = reply()
    sink.send(mail)
    files = os.listdir(tmp_path / "sent" / "new")
    assert files == [file_name(mail)]
    assert os.listdir(tmp_path / "sent" / "tmp") == []
    written = (tmp_path / "sent" / "new" / files[0]).read_bytes()
    assert written == (b"Return-Path: <>\r\nDelivered-To: a@ateneo.example.it\r\n"
                       b"Delivered-To: b@ateneo.example.it\r\n" + mail.data)
    (message,) = mailbox.Maildir(tmp_path / "sent", create=False)
    assert message["Message-ID"] == "<r1@helpdesk.example.it>"


def test_sink_runs_meanwhile_before_writing(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "sent")
    seen: list[list[str]] = []
    sink.send(reply(), meanwhile=lambda: seen.append(os.listdir(tmp_path / "sent" / "new")))
    assert seen == [[]]
    assert len(os.listdir(tmp_path / "sent" / "new")) == 1


def test_sink_sending_the_same_reply_again_replaces_it(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "sent")
    sink.send(reply(body="prima"))
    sink.send(reply(body="seconda"))
    sink.send(reply(message_id="<r2@helpdesk.example.it>"))
    assert len(os.listdir(tmp_path / "sent" / "new")) == 2
    texts = [p.read_bytes() for p in (tmp_path / "sent" / "new").iterdir()]
    assert sum(b"seconda" in t for t in texts) == 1
    assert not any(b"prima" in t for t in texts)


def test_sink_replaces_a_copy_a_reader_already_moved_to_cur(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "sent")
    mail = reply()
    sink.send(mail)
    name = file_name(mail)
    os.rename(tmp_path / "sent" / "new" / name, tmp_path / "sent" / "cur" / f"{name}:2,S")
    sink.send(reply(body="di nuovo"))
    assert os.listdir(tmp_path / "sent" / "new") == []
    assert os.listdir(tmp_path / "sent" / "cur") == [f"{name}:2,S"]
    assert b"di nuovo" in (tmp_path / "sent" / "cur" / f"{name}:2,S").read_bytes()


def test_sink_first_attempt_goes_to_new_without_listing_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = MaildirSink(tmp_path / "sent")
    deliver(sink.path, "read-reply.0123456789abcdef:2,S", b"old", sub="cur")

    def no_listing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a first attempt listed a folder")

    for name in ("scandir", "listdir"):
        monkeypatch.setattr(os, name, no_listing)
    for name in ("glob", "iterdir"):
        monkeypatch.setattr(Path, name, no_listing)
    mail = reply(first_attempt=True)
    sink.send(mail)
    sink.send(reply(body="di nuovo", first_attempt=True))  # even so, new/ is replaced, not duplicated
    monkeypatch.undo()
    assert os.listdir(sink.path / "new") == [file_name(mail)]
    assert b"di nuovo" in (sink.path / "new" / file_name(mail)).read_bytes()


def test_sink_later_attempt_replaces_the_copy_a_reader_moved_to_cur(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "sent")
    mail = reply(first_attempt=True)
    sink.send(mail)
    name = file_name(mail)
    os.rename(sink.path / "new" / name, sink.path / "cur" / f"{name}:2,RS")
    lookalikes = [f"{name}0:2,S", f"x{name}:2,S", name]  # not the same unique name + info
    for other in lookalikes:
        deliver(sink.path, other, b"other", sub="cur")
    sink.send(reply(body="di nuovo"))  # a retry: first_attempt is False
    assert os.listdir(sink.path / "new") == []
    assert sorted(os.listdir(sink.path / "cur")) == sorted([f"{name}:2,RS", *lookalikes])
    assert b"di nuovo" in (sink.path / "cur" / f"{name}:2,RS").read_bytes()
    assert all((sink.path / "cur" / other).read_bytes() == b"other" for other in lookalikes)


def test_sink_later_attempt_without_cur_still_writes_to_new(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "sent")
    (sink.path / "cur").rmdir()
    sink.send(reply())
    assert os.listdir(sink.path / "new") == [file_name(reply())]


def test_file_names_are_safe_and_distinct() -> None:
    odd = reply(message_id="<../../etc/passwd:2,S@x>")
    name = file_name(odd)
    assert "/" not in name and ":" not in name and not name.startswith(".")
    assert file_name(reply(message_id="<a/b@x>")) != file_name(reply(message_id="<a_b@x>"))


def test_sink_keeps_lf_messages_in_lf(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "sent")
    mail = OutgoingMail(kind="digest", message_id="<d@x>", envelope_from="helpdesk@servizi.example.it",
                        recipients=("r@x.example",), data=b"Subject: digest\n\nbody\n")
    sink.send(mail)
    (path,) = (tmp_path / "sent" / "new").iterdir()
    assert path.read_bytes() == (b"Return-Path: <helpdesk@servizi.example.it>\nDelivered-To: r@x.example\n"
                                 b"Subject: digest\n\nbody\n")


def test_sink_write_failure_is_transient(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "sent")
    (tmp_path / "sent" / "new").rmdir()
    with pytest.raises(TransportUnavailable, match="cannot write"):
        sink.send(reply())
    assert os.listdir(tmp_path / "sent" / "tmp") == []


def test_make_transport_builds_the_maildir_sink(tmp_path: Path) -> None:
    built = make_transport(settings(smtp={"kind": "maildir", "path": str(tmp_path / "out")}))
    assert isinstance(built, MaildirSink)
    assert (tmp_path / "out" / "new").is_dir()
