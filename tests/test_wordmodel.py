"""The word model: its features, its arithmetic, its file, and that the shipped file is what the labelled sets give."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from maild.cli.main import main
from maild.errors import RulesError
from maild.records import Address, Category
from maild.rules.wordmodel import (
    NaiveBayes,
    Reading,
    dumps,
    feature_keys,
    features,
    load_word_model,
    sender_names,
    train,
)

REPO = Path(__file__).resolve().parent.parent

SAMPLES = [
    (features("", "sbloccate la casella", 4), Category.PASSWORD_RESET),
    (features("", "sbloccate il mio account", 4), Category.PASSWORD_RESET),
    (features("", "chiudete la casella vecchia", 4), Category.LIFECYCLE),
    (features("", "chiudete la lista vecchia", 4), Category.LIFECYCLE),
    (features("", "aggiornate il numero di telefono", 4), Category.ANAGRAFICA),
    (features("", "aggiornate la rubrica", 4), Category.ANAGRAFICA),
    (features("", "quando aprite lo sportello", 4), Category.OTHER),
    (features("", "grazie per la risposta", 4), Category.OTHER),
]


def model_file(tmp_path: Path, min_docs: int = 1, threshold: float = 0.5) -> Path:
    path = tmp_path / "model.json"
    path.write_text(dumps(train(SAMPLES, prefix=4, threshold=threshold, min_docs=min_docs)))
    return path


def test_features_are_word_prefixes_and_pairs_within_a_line_with_the_words_they_came_from() -> None:
    got = features("Sblocco CASELLA", "Per favore chiudete\nla lista", 4)
    assert got == {"sblo": "sblocco", "case": "casella", "sblo_case": "sblocco casella",
                   "favo": "favore", "chiu": "chiudete", "favo_chiu": "favore chiudete",
                   "per": "per", "per_favo": "per favore", "list": "lista"}


def test_the_senders_names_and_mailbox_words_are_no_features() -> None:
    """A name seen beside a privileged request would weigh for it in any message its owner writes."""
    names = sender_names([Address("Francesca Loì", "f.loi@ateneo.example.it")])
    assert names == frozenset({"francesca", "loi"})
    text = "Idem per me, grazie.\nFrancesca Loi\nServizio Mensa"
    assert features("", text, 4, names) == {"idem": "idem", "per": "per", "idem_per": "idem per",
                                            "graz": "grazie", "per_graz": "per grazie", "serv": "servizio",
                                            "mens": "mensa", "serv_mens": "servizio mensa"}
    assert feature_keys("", text, 4, names) == set(features("", text, 4, names))
    assert "fran" in features("", text, 4)


def test_accents_and_case_fold_away_and_short_words_are_skipped() -> None:
    assert features("", "Più È di", 4) == {"piu": "piu"}


def test_posterior_is_naive_bayes_over_the_features_present() -> None:
    model = NaiveBayes.of_counts(("a", "b"), (2, 2), {"x": (2, 0)})
    got = model.posterior(["x", "unknown"])
    odds = (3 / 4) / (1 / 4)  # (2+1)/(2+2) against (0+1)/(2+2), equal priors
    assert got["a"] == pytest.approx(odds / (odds + 1))
    assert sum(got.values()) == pytest.approx(1)
    assert model.leaning("x", 0) == pytest.approx(math.log(3))
    assert model.leaning("unknown", 0) == 0


def test_the_posterior_does_not_depend_on_the_order_the_features_come_in() -> None:
    """Features come from a set, whose order changes with the hash seed; the outcome must not."""
    logs = {"big": (1e16, 0.0), "one": (1.0, 0.0), "minus": (-1e16, 0.0)}
    model = NaiveBayes(("a", "b"), (0.0, 0.0), logs)
    orders = [["big", "one", "minus"], ["big", "minus", "one"], ["one", "minus", "big"]]
    assert sum(logs[f][0] for f in orders[0]) != sum(logs[f][0] for f in orders[1])  # a plain sum would differ
    got = {tuple(model.posterior(order).items()) for order in orders}
    assert len(got) == 1
    assert dict(got.pop())["a"] == pytest.approx(math.e / (math.e + 1))

def test_a_privileged_text_is_read_with_its_category_and_the_words_that_weighed(tmp_path: Path) -> None:
    model = load_word_model(model_file(tmp_path))
    reading = model.reading("", "sbloccate la casella per favore")
    assert isinstance(reading, Reading)
    assert reading.category is Category.PASSWORD_RESET
    assert reading.probability > 0.5
    assert "sbloccate" in reading.words
    assert "word model: a privileged request more likely than not" in reading.reason
    assert "'sbloccate'" in reading.reason


def test_an_ordinary_text_gets_no_reading(tmp_path: Path) -> None:
    model = load_word_model(model_file(tmp_path))
    assert model.reading("", "aggiornate il numero di telefono") is None
    assert model.reading("", "") is None


def test_the_threshold_comes_from_the_file(tmp_path: Path) -> None:
    model = load_word_model(model_file(tmp_path, threshold=0.999999))
    assert model.reading("", "sbloccate la casella") is None


def test_features_of_fewer_documents_than_min_docs_are_left_out_of_the_file(tmp_path: Path) -> None:
    counts = json.loads(model_file(tmp_path, min_docs=2).read_text())["counts"]
    assert "sblo" in counts  # two documents
    assert "favo" not in counts and "tele" not in counts  # one each
    assert counts["chiu"] == [0, 0, 2, 0]  # classes in the order of Category


def test_the_file_is_one_feature_a_line_and_the_same_every_time() -> None:
    data = train(SAMPLES, prefix=4, threshold=0.5, min_docs=2)
    text = dumps(data)
    assert text == dumps(train(list(reversed(SAMPLES)), prefix=4, threshold=0.5, min_docs=2))
    assert json.loads(text) == data
    assert '\n  "sblo": [0, 2, 0, 0],\n' in text


@pytest.mark.parametrize(("content", "said"), [
    ("not json", "not a word model file"),
    ('{"version": 2}', "version 2, expected 1"),
    ('{"version": 1, "classes": ["a"]}', r"classes \['a'\]"),
    ('{"version": 1}', "not a word model file"),
])
def test_a_bad_model_file_is_a_rules_error_that_names_it(tmp_path: Path, content: str, said: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RulesError, match=said) as caught:
        load_word_model(path)
    assert str(path) in str(caught.value)


def test_a_missing_model_file_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read word model"):
        load_word_model(tmp_path / "absent.json")


def labelled_folders() -> list[Path]:
    return sorted(p.parent for p in (REPO / "tests" / "data").glob("*/labels.json"))


def test_the_shipped_model_is_the_one_every_labelled_folder_gives(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = REPO / "config" / "wordmodel.json"
    assert main(["word-model", "check", "--out", str(shipped), *map(str, labelled_folders())]) == 0
    assert "the model these folders give" in capsys.readouterr().out


def test_train_writes_a_model_and_check_refuses_another(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = str(REPO / "tests" / "data" / "corpus")
    out = tmp_path / "model.json"
    assert main(["word-model", "train", "--out", str(out), corpus]) == 0
    assert load_word_model(out).privileged.priors[0] < 0
    assert main(["word-model", "check", "--out", str(REPO / "config" / "wordmodel.json"), corpus]) == 1
    assert "is not the model these folders give" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["Per favore chiudete\nla lista", "", "Più È di\n\nsblocco sblocco casella"])
def test_the_keys_alone_are_the_features_keys(text: str) -> None:
    assert feature_keys("Sblocco CASELLA", text, 4) == set(features("Sblocco CASELLA", text, 4))
