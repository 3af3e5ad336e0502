"""Removal of quoted history, signatures and legal disclaimers, in Italian and English.

The cleaner runs with the shipped rules data, so these tests also pin the
markers in config/rules.toml.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.rules import load_rules
from maild.rules.textclean import (
    _PUNCTUATION,
    _SYMBOL,
    CleanedText,
    CleanRules,
    Marker,
    any_marker,
    clean,
    fold,
    split_lines,
)
from maild.settings import DEFAULT_RULES


@cache
def markers() -> CleanRules:
    return load_rules(DEFAULT_RULES).cleaning


def cleaned(body: str) -> CleanedText:
    return clean(body, markers())


def own(body: str) -> str:
    return "\n".join(ln.text for ln in cleaned(body).own)


def quoted(body: str) -> str:
    return "\n".join(ln.text for ln in cleaned(body).quoted)


# -- folding -------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "folded"), [
    ("PIÙ", "piu"), ("perché", "perche"), ("SBLOCCO", "sblocco"), ("l’indirizzo", "l'indirizzo"),
    ("“Noemi”", '"noemi"'), ("Forlì – Cesena", "forli - cesena"), ("e\u00a0mail", "e mail"),
    ("Straße", "strasse"),
])
def test_fold_lowercases_strips_accents_and_plain_punctuation(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def _fold_by_definition(text: str) -> str:
    """fold() as specified, character by character: the fast paths must agree with it."""
    text = text.translate(_PUNCTUATION)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="aeiouAEIOU`'\u0300\u0301àèéìòùÀÈÉß\u00a0\u2019 x", max_size=30))
def test_fold_agrees_with_its_definition_on_any_text(text: str) -> None:
    assert fold(text) == _fold_by_definition(text)


@pytest.mark.parametrize(("raw", "words"), [
    ("ho sbagliato la 🔑 e l'account è 🔒", ["ho", "sbagliato", "la", "password", "e", "l'account", "e", "bloccare"]),
    ("📧 x@y.it ➡️ 🗑️ please", ["casella", "x@y.it", "va", "eliminare", "please"]),
    ("📧 x@y.it ➡ 🗑 please", ["casella", "x@y.it", "va", "eliminare", "please"]),
    ("🔒🔑😭", ["bloccare", "password", "😭"]),
    ("🔑 ❌ non toccatela", ["password", "no", "non", "toccatela"]),
])
def test_fold_reads_a_symbol_of_the_rules_as_its_words(raw: str, words: list[str]) -> None:
    assert fold(raw, markers().symbols).split() == words


def test_every_shipped_symbol_is_read_alike_with_or_without_its_emoji_selector() -> None:
    symbols = markers().symbols
    assert len(symbols) > 1 and symbols[0xFE0F] == ""
    for code, words in symbols.items():
        if code == 0xFE0F:
            continue
        assert words.strip() and re.fullmatch(r" [a-z0-9 ]+ ", words), chr(code)
        bare, styled = fold(f"a{chr(code)}b", symbols), fold(f"a{chr(code)}\ufe0fb", symbols)
        assert bare == styled == f"a{words}b"


def test_every_character_the_rules_may_read_as_a_symbol_is_looked_for() -> None:
    """fold translates the symbols only in a text holding such a character: none may be missed."""
    for code in range(0x80, 0x110000):
        char = chr(code)
        assert char.isalnum() or _SYMBOL.fullmatch(char) is not None, hex(code)


def test_fold_without_symbols_leaves_them_as_they_are() -> None:
    assert fold("la 🔑 è 🔒") == "la 🔑 e 🔒"
    assert fold("Reset Password", markers().symbols) == "reset password"


def test_cleaning_reads_symbols_in_the_folded_copy_and_keeps_the_text_as_written() -> None:
    lines = cleaned("Ciao,\n🔒 casella m.rossi@ateneo.example.it subito\n> 🔓 dopo").own
    assert [ln.text for ln in lines] == ["Ciao,", "🔒 casella m.rossi@ateneo.example.it subito"]
    assert lines[1].folded.split()[:2] == ["bloccare", "casella"]
    assert [ln.folded.split() for ln in cleaned("> 🔓 dopo").quoted] == [["sbloccare", "dopo"]]


def test_split_lines_reads_symbols_only_when_given_them() -> None:
    assert [ln.folded for ln in split_lines("🆕 lista")] == ["🆕 lista"]
    assert [ln.folded.split() for ln in split_lines("🆕 lista", symbols=markers().symbols)] == [["nuova", "lista"]]


MARKER_SAMPLES = st.lists(st.sampled_from([
    "-- ", "--", "Inviato da iPhone", "sent from my phone", "ciao", "\n", " ", "da: mario", "oggetto: x",
    "il giorno 3 marzo mario ha scritto:", "wrote:", "-----original message-----", "begin forwarded message:",
    "x", "\t", ">",
]), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(MARKER_SAMPLES)
def test_joined_markers_match_exactly_where_some_marker_does(text: str) -> None:
    for name in ("history", "signatures"):
        each = getattr(markers(), name)
        joined = getattr(markers(), f"{name}_any")
        assert joined is not None, name
        folded = fold(text)
        assert (joined.search(folded) is None) is all(m.pattern.search(folded) is None for m in each), name


def test_markers_with_groups_or_different_flags_are_not_joined() -> None:
    plain = Marker("plain", re.compile("abc"))
    assert any_marker([plain, Marker("other", re.compile("x+y"))]) is not None
    assert any_marker([plain, Marker("grouped", re.compile(r"(a)\1"))]) is None
    assert any_marker([plain, Marker("multiline", re.compile("^a", re.MULTILINE))]) is None
    assert any_marker([plain, Marker("dotall", re.compile("(?s)a.b"))]) is None
    # The same global inline flag everywhere: joined, it would no longer stand at the start.
    assert any_marker([Marker("a", re.compile("(?s)a.")), Marker("b", re.compile("(?s)b."))]) is None
    assert any_marker([]) is None


# -- quoted history ------------------------------------------------------------


def test_quote_marked_lines_are_removed_and_kept_aside() -> None:
    body = "Ok, grazie.\n> la password è stata reimpostata\n> Helpdesk\n"
    result = cleaned(body)
    assert [ln.text for ln in result.own] == ["Ok, grazie."]
    assert [ln.text for ln in result.quoted] == ["la password è stata reimpostata", "Helpdesk"]
    assert any("quoted ('>') lines removed from line 2" in note for note in result.notes)


def test_italian_attribution_wrapped_over_two_lines_is_removed() -> None:
    body = ("Perfetto, funziona.\n\nIl giorno mar 20 ott 2026 alle ore 16:12 Helpdesk Posta\n"
            "<helpdesk-posta@servizi.example.it> ha scritto:\n> Gentile utente,\n> la casella è stata sbloccata.\n")
    assert own(body) == "Perfetto, funziona."
    assert "la casella è stata sbloccata." in quoted(body)
    assert "Il giorno" not in quoted(body)


def test_english_attribution_is_removed() -> None:
    body = "Thanks, all good now.\n\nOn Tue, Oct 20, 2026 at 4:12 PM Help Desk <hd@example.it> wrote:\n> Done.\n"
    assert own(body) == "Thanks, all good now."
    assert quoted(body) == "Done."


def test_bottom_posted_reply_below_the_quote_is_kept() -> None:
    body = ("On Mon, 1 Feb 2027 at 10:00, Help Desk <hd@example.it> wrote:\n> Which list do you mean?\n\n"
            "The list is lab-meetings, please add Anna to it.\n")
    assert own(body).strip() == "The list is lab-meetings, please add Anna to it."
    assert quoted(body) == "Which list do you mean?"


@pytest.mark.parametrize("separator", [
    "-----Messaggio originale-----", "-----Original Message-----", "---------- Forwarded message ---------",
    "----- Messaggio inoltrato -----", "Inizio messaggio inoltrato:", "Begin forwarded message:",
])
def test_original_and_forwarded_message_separators_start_history(separator: str) -> None:
    body = (f"Vi giro la segnalazione.\nMario\n\n{separator}\nDa: Anna <anna@example.it>\nOggetto: aiuto\n\n"
            "Testo vecchio\n")
    result = cleaned(body)
    assert [ln.text for ln in result.own if ln.text] == ["Vi giro la segnalazione.", "Mario"]
    assert [ln.text for ln in result.quoted] == ["Testo vecchio"]
    assert any("quoted history removed from line 4" in note for note in result.notes)


@pytest.mark.parametrize("block", [
    "Da: Lodi Elena <elena.lodi@example.it>\nInviato: lunedì 18 gennaio 2027 10:52\nA: Helpdesk\nOggetto: password",
    "From: Elena Lodi <elena.lodi@example.it>\nSent: Monday, January 18, 2027 10:52 AM\nTo: Helpdesk\n"
    "Cc: Someone\nSubject: password",
    "**Da:** Lodi Elena <elena.lodi@example.it>  \n**Inviato:** lunedì 18 gennaio 2027  \n**Oggetto:** password",
])
def test_outlook_header_blocks_start_history_without_a_separator(block: str) -> None:
    body = f"Vedi sotto, grazie.\n\n________________________________\n{block}\n\nNon riesco ad accedere.\n"
    assert own(body) == "Vedi sotto, grazie."
    assert quoted(body) == "Non riesco ad accedere."


def test_nested_history_inside_the_quote_is_cut_too() -> None:
    body = ("Procedete pure.\n\n-----Original Message-----\nFrom: B\nSubject: x\n\nPlease reset it.\n\n"
            "-----Original Message-----\nFrom: C\nSubject: y\n\nOld thread.\n")
    assert quoted(body) == "Please reset it."


def test_a_body_without_history_is_untouched() -> None:
    body = "Buongiorno,\nvi chiedo di aggiungere Anna alla lista.\nIl problema da: ieri\n"
    assert own(body) == "Buongiorno,\nvi chiedo di aggiungere Anna alla lista.\nIl problema da: ieri"
    assert cleaned(body).quoted == ()


# -- signatures ------------------------------------------------------------------


def test_signature_delimiter_cuts_to_the_end() -> None:
    body = "Please add me to the list.\n-- \nMario Rossi\nPhone 123\nOffice 4\nA\nB\nC\nD\nE\n"
    assert own(body) == "Please add me to the list."


@pytest.mark.parametrize("line", ["Inviato da iPhone", "Inviato dal mio Samsung Galaxy", "Sent from my iPhone",
                                  "Get Outlook for Android"])
def test_mobile_client_signatures_are_removed(line: str) -> None:
    assert own(f"Come configuro la posta?\n\n{line}\n") == "Come configuro la posta?"


@pytest.mark.parametrize("closing", ["Cordiali saluti", "Distinti saluti,", "Grazie mille, buon lavoro",
                                     "Kind regards,", "Thanks a lot,", "Best"])
def test_closing_formula_starts_a_signature_block(closing: str) -> None:
    body = f"Vi chiedo di eliminare la lista.\n\n{closing}\nDott.ssa Marta Bernardi\nUfficio Personale - tel. 051 123\n"
    result = cleaned(body)
    assert own(body) == "Vi chiedo di eliminare la lista."
    assert any("closing formula" in note for note in result.notes)


def test_closing_followed_by_a_real_question_is_kept() -> None:
    body = "Vi scrivo per la lista.\nGrazie.\nPS: potete anche eliminare la vecchia casella di Mario?\n"
    assert "eliminare la vecchia casella" in own(body)


@pytest.mark.parametrize("postscript", ["P.S. riattivate la casella eventi", "PS: anche la lista coro",
                                        "P. S. please delete the old list", "P.P.S. grazie"])
def test_a_postscript_after_the_signature_delimiter_is_kept(postscript: str) -> None:
    body = f"Vi scrivo per la lista.\n-- \nMario Rossi\nUfficio Personale\n\n{postscript}\n"
    assert own(body) == f"Vi scrivo per la lista.\n\n{postscript}"


def test_a_short_postscript_after_a_closing_block_is_kept_and_the_signature_cut() -> None:
    body = ("Grazie per la lista.\nBuona giornata,\nMarta Bernardi\nSegreteria didattica\n\n"
            "PS: riattivate la casella eventi\n")
    result = cleaned(body)
    assert own(body) == "Grazie per la lista.\n\nPS: riattivate la casella eventi"
    assert any("closing formula" in note for note in result.notes)


def test_a_signature_line_that_starts_with_ps_but_is_no_postscript_is_cut() -> None:
    body = "Vi scrivo per la lista.\n-- \nMario Rossi\nPS Cardiologia, tel. 051 123\n"
    assert own(body) == "Vi scrivo per la lista."


def test_closing_followed_by_a_sentence_is_kept() -> None:
    assert own("Thanks!\nPlease also delete the old seminars list.\n") == (
        "Thanks!\nPlease also delete the old seminars list.")


@pytest.mark.parametrize("kind", ["notices", "requests"])
def test_signature_markers_find_their_examples_and_none_of_their_counter_examples(kind: str) -> None:
    found = getattr(markers(), kind)
    assert found, kind
    for marker in found:
        assert marker.examples and marker.counter_examples, marker.name
        for line in marker.examples:
            assert marker.pattern.search(fold(line)), (marker.name, line)
        for line in marker.counter_examples:
            assert not marker.pattern.search(fold(line)), (marker.name, line)


def test_a_standing_notice_in_the_signature_block_goes_with_it() -> None:
    body = ("Potete correggere il mio interno in rubrica?\nGrazie\n\nSonia Neri\nUfficio del personale\n"
            "Tel. 0861 770 3146\n\nPer le richieste di creazione o cancellazione delle caselle e per il ripristino "
            "delle password il personale deve rivolgersi esclusivamente al referente tecnico.\n")
    result = cleaned(body)
    assert own(body) == "Potete correggere il mio interno in rubrica?"
    assert any("standing notice" in note for note in result.notes)


def test_an_english_standing_notice_in_the_signature_block_goes_with_it() -> None:
    body = ("Please fix my phone number in the directory.\nKind regards,\nTom Baker\nLibrary\n"
            "For mailbox creations, deletions or password resets please contact your technical referent.\n")
    assert own(body) == "Please fix my phone number in the directory."


def test_a_notice_that_also_asks_the_help_desk_is_the_senders_text() -> None:
    body = ("Grazie\nSonia Neri\nUfficio del personale\n"
            "Per le richieste di cancellazione rivolgersi al referente; vi chiedo pero di chiudere la casella eventi."
            "\n")
    assert "chiudere la casella eventi" in own(body)


def test_a_request_typed_in_a_signature_line_is_kept() -> None:
    body = ("Buongiorno,\nvedete sotto, grazie.\n\n--\nIrina Popescu\nUfficio Registro imprese\n"
            "Interno 2214 (nuovo dal 10/01, vi prego aggiornare la rubrica)\nwww.example.it\n")
    result = cleaned(body)
    assert own(body) == ("Buongiorno,\nvedete sotto, grazie.\n\n"
                         "Interno 2214 (nuovo dal 10/01, vi prego aggiornare la rubrica)")
    assert any("request kept from the signature" in note for note in result.notes)


def test_a_request_in_the_lines_after_a_closing_stays_and_the_signature_goes() -> None:
    body = "Grazie\nMarta Bernardi\nInterno 2214 (nuovo, vi prego aggiornare la rubrica)\nSegreteria\n"
    assert own(body) == "Interno 2214 (nuovo, vi prego aggiornare la rubrica)"


def test_closing_followed_by_a_long_tail_is_kept() -> None:
    tail = "\n".join(f"riga {i} con un contenuto" for i in range(10))
    body = f"Buongiorno.\nGrazie\n{tail}\n"
    assert "riga 9" in own(body)


# -- disclaimers -------------------------------------------------------------------


@pytest.mark.parametrize("disclaimer", [
    "Questo messaggio e i suoi allegati sono riservati e destinati esclusivamente al destinatario. "
    "Chi lo ricevesse per errore è pregato di eliminarlo e di non divulgare la password.",
    "Questo messaggio, inclusi gli eventuali allegati, contiene informazioni riservate ad uso esclusivo "
    "del destinatario.",
    "Ai sensi del D.Lgs. 196/2003 e del Regolamento UE 2016/679 (GDPR) le informazioni contenute in questo "
    "messaggio sono riservate.",
    "This e-mail and any attachments are confidential and may be privileged. If you have received this "
    "message in error please delete it and reset nothing.",
    "CONFIDENTIALITY NOTICE: the information in this message is intended only for the addressee.",
])
def test_legal_disclaimers_are_removed(disclaimer: str) -> None:
    body = f"Vi chiedo di aggiornare il mio numero in rubrica.\n\nMario\n\n{disclaimer}\n"
    result = cleaned(body)
    assert "aggiornare il mio numero" in own(body)
    assert fold(disclaimer)[:20] not in fold(own(body))
    assert any(note.startswith("disclaimer removed from line 5") for note in result.notes)


def test_disclaimer_in_the_middle_of_a_paragraph_cuts_from_its_line() -> None:
    body = ("Please update my title.\nRegards\nAnna\n__________\n"
            "This email and any attachments are confidential\nand intended solely for the addressee.\n")
    assert own(body) == "Please update my title."


def test_a_sentence_that_merely_starts_like_a_disclaimer_is_kept() -> None:
    body = "Questo messaggio è per chiedere la disattivazione della casella di Mario Rossi.\n"
    assert own(body).startswith("Questo messaggio è per chiedere")


def test_quoted_history_is_cleaned_like_own_text() -> None:
    body = ("Autorizzo.\n\n-----Messaggio originale-----\nDa: Elena\nInviato: oggi\nA: Alberto\nOggetto: pw\n\n"
            "Non ricordo la password.\nGrazie\nElena Lodi\nUfficio Stipendi\n\n"
            "Questo messaggio e i suoi allegati sono riservati.\n")
    assert quoted(body) == "Non ricordo la password."


def test_line_endings_and_numbers_follow_the_original_body() -> None:
    body = "Riga uno\r\nRiga due\r\n> citata\r\nRiga quattro\r\n"
    result = cleaned(body)
    assert [(ln.number, ln.text) for ln in result.own] == [(1, "Riga uno"), (2, "Riga due"), (4, "Riga quattro")]
    assert [(ln.number, ln.text) for ln in result.quoted] == [(3, "citata")]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aB `'\r\n\x0b\x0c\x1c\x1d\x1e\x85Z.è")), max_size=60))
def test_split_lines_folds_each_line_as_fold_does_whatever_the_line_breaks(body: str) -> None:
    assert [(ln.text, ln.folded) for ln in split_lines(body)] == [(raw, fold(raw)) for raw in body.splitlines()]
