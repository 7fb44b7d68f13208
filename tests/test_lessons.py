"""Lessons (lrcore/lessons.py): validation through the settings table, signed tokens that refuse any
change, and lessons kept in the run store (lrcore/store_lessons.py)."""
from __future__ import annotations

import base64
import json

import pytest

from lrcore.lessons import CHANGED, MAX_TEXT, MAX_TITLE, PAGES, Lesson, LessonError, decode, encode
from lrcore.store import Store

KEY = "correct horse battery staple"


def sample() -> Lesson:
    return Lesson("Learning rates", "Try **three** rates.", fixed={"learning_rate": 0.1, "epochs": 3, "seed": 7},
                  hidden=("seed",), pages=("weights", "train"))


def payload_of(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def with_payload(token: str, data: dict) -> str:
    """The token with its JSON replaced and the old signature kept (what a student could try)."""
    text = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=") + "." + token.split(".")[1]


def test_round_trip_keeps_every_part_and_the_id():
    lesson = sample()
    back = decode(encode(lesson, KEY), KEY)
    assert back == lesson
    assert back.lesson_id == lesson.lesson_id and len(lesson.lesson_id) == 12
    assert back.fixed == {"epochs": 3, "learning_rate": 0.1, "seed": 7}
    assert back.hidden == ("seed",) and back.pages == ("train", "weights")  # the navigation's order
    assert back.allows_page("weights") and not back.allows_page("runs") and not back.allows_page("")


def test_token_is_url_safe_and_readable_without_the_key():
    token = encode(sample(), KEY)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert KEY not in token
    assert payload_of(token)["fixed"]["learning_rate"] == 0.1


def test_same_content_same_id_other_content_other_id():
    assert Lesson("A", fixed={"learning_rate": 1}).lesson_id == Lesson("A", fixed={"learning_rate": 1.0}).lesson_id
    assert Lesson("A").lesson_id != Lesson("B").lesson_id
    assert Lesson("A", pages=()).allows_page("sweep")  # no pages named: every page


@pytest.mark.parametrize("change", [
    lambda data: {**data, "fixed": {**data["fixed"], "learning_rate": 50.0}},  # unlock a fixed value
    lambda data: {**data, "fixed": {k: v for k, v in data["fixed"].items() if k != "epochs"}},
    lambda data: {**data, "hidden": []},
    lambda data: {**data, "pages": []},
    lambda data: {**data, "title": "Free for all"},
    lambda data: {**data, "text": "Use lr 50"},
])
def test_a_changed_payload_is_refused(change):
    token = encode(sample(), KEY)
    with pytest.raises(LessonError) as error:
        decode(with_payload(token, change(payload_of(token))), KEY)
    assert str(error.value) == CHANGED


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # signature changed
    lambda token: token.split(".")[0] + "." + "x" * 43,
    lambda token: token.split(".")[0],  # signature cut off
    lambda token: token[:len(token) // 2],  # cut in the middle
    lambda token: token.replace(".", ".."),
    lambda token: "",
    lambda token: "not a lesson",
    lambda token: "é" + token,  # not ASCII
    lambda token: token + "." + token,
    lambda token: "A" * 7000 + "." + token.split(".")[1],  # far too long
])
def test_a_tampered_or_garbled_token_is_refused_with_the_message(tamper):
    with pytest.raises(LessonError) as error:
        decode(tamper(encode(sample(), KEY)), KEY)
    assert str(error.value) == CHANGED


def test_a_token_signed_with_another_key_is_refused():
    with pytest.raises(LessonError, match="changed or cut off"):
        decode(encode(sample(), "another key"), KEY)


def test_no_teacher_key_no_lessons():
    with pytest.raises(LessonError, match="teacher key"):
        decode(encode(sample(), KEY), "")
    with pytest.raises(LessonError, match="teacher key"):
        encode(sample(), "")


def test_a_signed_lesson_with_a_value_this_server_refuses_says_so():
    """Signed by the teacher key, yet invalid here (e.g. made by another version): a clear message."""
    data = {**sample().to_dict(), "fixed": {"learning_rate": 500.0}, "hidden": []}
    payload = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    from lrcore.lessons import _signature

    with pytest.raises(LessonError) as error:
        decode(f"{payload}.{_signature(payload, KEY)}", KEY)
    assert "cannot be used on this server" in str(error.value) and "learning rate" in str(error.value)
    data["v"] = 99
    payload = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    with pytest.raises(LessonError, match="another version"):
        decode(f"{payload}.{_signature(payload, KEY)}", KEY)


@pytest.mark.parametrize("fixed, words", [
    ({"learning_rate": 0.0}, "learning rate must be"),
    ({"learning_rate": 500}, "learning rate must be"),
    ({"learning_rate": float("nan")}, "learning rate must be"),
    ({"epochs": 0}, "epochs must be"),
    ({"epochs": 2.5}, "epochs must be"),
    ({"batch_size": "big"}, "batch size must be"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, momentum, adamw"),
    ({"momentum": 1.0}, "momentum must be"),
    ({"validation_fraction": 0.95}, "validation fraction must be a number from 0.01 to 0.9"),  # the slider's range
    ({"momentum": 0.123}, "at most two decimals"),
    ({"deskew": 1}, "deskew must be"),
])
def test_a_lesson_cannot_fix_an_invalid_value(fixed, words):
    with pytest.raises(LessonError) as error:
        Lesson("Bad", fixed=fixed)
    assert words in str(error.value)


def test_unknown_settings_and_pages_and_loose_hidden_are_refused():
    with pytest.raises(LessonError, match="lr, device cannot be fixed") as error:
        Lesson("x", fixed={"lr": 0.1, "device": "cpu"})
    assert "device" in str(error.value)  # not a Train page control
    with pytest.raises(LessonError, match="unknown pages admin"):
        Lesson("x", pages=("train", "admin"))
    with pytest.raises(LessonError, match="must include train"):
        Lesson("x", pages=("weights",))
    with pytest.raises(LessonError, match="hidden setting must also be fixed"):
        Lesson("x", hidden=("seed",))
    with pytest.raises(LessonError, match="title"):
        Lesson(" ")
    with pytest.raises(LessonError, match="title"):
        Lesson("t" * (MAX_TITLE + 1))
    with pytest.raises(LessonError, match="instruction text"):
        Lesson("x", "t" * (MAX_TEXT + 1))


def test_the_pages_are_the_dashboards():
    """Every page file is a lesson page (by its URL path) and the other way round."""
    from pathlib import Path

    files = {path.stem for path in (Path(__file__).parents[1] / "pages").glob("*.py")}
    assert files == set(PAGES)


def test_mismatches_name_each_fixed_setting_that_differs():
    lesson = Lesson("x", fixed={"learning_rate": 0.1, "per_class_limit": None, "deskew": False})
    assert lesson.mismatches({"learning_rate": 0.1, "per_class_limit": None, "deskew": False}) == {}
    found = lesson.mismatches({"learning_rate": 50.0, "per_class_limit": 500, "deskew": 0})
    assert set(found) == {"learning_rate", "per_class_limit", "deskew"}
    assert found["learning_rate"] == "is fixed by the lesson at 0.1, got 50"


def test_the_store_keeps_each_lesson_once_newest_first(tmp_path):
    store = Store(tmp_path)
    first, second = sample(), Lesson("Batch sizes", fixed={"batch_size": 16})
    store.save_lesson(first, encode(first, KEY))
    store.save_lesson(second, encode(second, KEY))
    store.save_lesson(first, encode(first, KEY))  # made again: kept once
    saved = store.lessons()
    assert [s.lesson_id for s in saved] == [second.lesson_id, first.lesson_id]
    assert saved[1].title == "Learning rates" and saved[1].lesson(KEY) == first
    assert Store(tmp_path).lessons()[0].lesson_id == second.lesson_id  # another process opening it
