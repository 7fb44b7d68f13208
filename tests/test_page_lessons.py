"""Lessons on the pages (AppTest): a lesson link fixes (disabled controls) and hides settings, ignores URL
parameters that try to change them, keeps itself in the URL, limits the pages, refuses a forged value at
Start and a tampered link with a message; the teacher makes a link on the Train page."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from lrcore.classroom import key_fingerprint, owner_id
from lrcore.lessons import CHANGED, Lesson, decode, encode
from lrcore.store import Store
from tests.apptest_helpers import texts
from ui import common
from ui.identity import TOKEN_KEY
from ui.lessons import FIXED_NOTE, NO_KEY

KEY = "teacher-key-for-lesson-tests"
STUDENT_TOKEN, TEACHER_TOKEN = "student-token-0123456789", "teacher-token-0123456789"
PAGE = "pages/train.py"
# Small and quick: 30 images per class, 2 epochs; the seed fixed and hidden.
LESSON = Lesson("Learning rates", "Train with **this** rate, then compare.",
                fixed={"learning_rate": 0.1, "epochs": 2, "per_class_limit": 30, "seed": 7},
                hidden=("seed",), pages=("train", "weights"))


@pytest.fixture(autouse=True)
def class_server(tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LRCORE_TEACHER_KEY", KEY)
    return tmp_path


def open_page(page: str = PAGE, query: dict | None = None, token: str = STUDENT_TOKEN) -> AppTest:
    at = AppTest.from_file("../dashboard.py", default_timeout=60)
    for name, value in (query or {}).items():
        at.query_params[name] = value
    at.session_state[TOKEN_KEY] = token  # this browser's identity (AppTest sends no cookie)
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def in_lesson(page: str = PAGE, **query) -> AppTest:
    return open_page(page, {"lesson": encode(LESSON, KEY), **query})


def start_button(at: AppTest):
    return next(b for b in at.button if b.label == "Start")


def test_fixed_settings_are_set_and_disabled_hidden_ones_absent_and_the_banner_shown():
    at = in_lesson()
    lr = at.number_input(key="train_learning_rate")
    assert lr.value == 0.1 and lr.disabled
    assert at.select_slider(key="train_lr_grid").disabled and at.select_slider(key="train_lr_grid").value == 0.1
    assert at.number_input(key="train_epochs").value == 2 and at.number_input(key="train_epochs").disabled
    assert at.toggle(key="train_limit_on").value and at.toggle(key="train_limit_on").disabled
    assert at.number_input(key="train_per_class_limit").value == 30
    assert not any(w.key == "train_seed" for w in at.number_input)  # hidden: not on the page
    assert at.session_state["train_seed"] == 7  # but in force
    assert not at.number_input(key="train_batch_size").disabled  # free
    assert sum(FIXED_NOTE in c.value for c in at.caption) == 3  # lr, epochs, images per class
    markdown = texts(at.markdown)
    assert "Lesson: Learning rates" in markdown and "Train with **this** rate" in markdown
    assert at.query_params["lesson"] == encode(LESSON, KEY)


def test_url_parameters_cannot_change_a_fixed_setting():
    at = in_lesson(lr="50", epochs="2", batch_size="64")
    assert at.number_input(key="train_learning_rate").value == 0.1
    assert at.number_input(key="train_batch_size").value == 64  # a free setting follows the link
    warnings = texts(at.warning)
    assert "lr=50 was ignored: the lesson fixes the learning rate at 0.1" in warnings.replace("\\", "")
    assert "epochs" not in warnings  # the link's value is the lesson's: nothing to say


def test_a_forged_widget_value_is_put_back_and_the_run_trains_with_the_lesson(monkeypatch):
    at = in_lesson()
    at.session_state["train_learning_rate"] = 50.0  # what a crafted widget message would set
    at.session_state["train_seed"] = 3
    at.run()
    assert at.number_input(key="train_learning_rate").value == 0.1
    start_button(at).click()
    at.run()
    assert not at.exception, at.exception
    worker = common.get_jobs().live_run(at.session_state["run_id"])
    worker.join(60)
    record = worker.snapshot()
    assert (record.config.learning_rate, record.config.seed, record.config.epochs) == (0.1, 7, 2)
    assert record.lesson == LESSON.lesson_id and record.owner == owner_id(STUDENT_TOKEN)


def test_the_draw_pages_quick_model_trains_with_the_lessons_fixed_values():
    drawing = Lesson("Draw", fixed=LESSON.fixed, pages=("train", "draw"))
    at = open_page("pages/draw.py", {"lesson": encode(drawing, KEY)})
    assert "The lesson's settings (learning rate 0.1, batch size 128, 2 epochs" in texts(at.markdown)
    next(b for b in at.button if b.label == "Train a quick model").click()
    at.run()
    assert not at.exception, at.exception
    worker = common.get_jobs().live_run(at.session_state["draw_quick_run"])
    worker.join(60)
    record = worker.snapshot()
    assert (record.config.learning_rate, record.config.seed, record.config.epochs,
            record.config.per_class_limit) == (0.1, 7, 2, 30)
    assert record.lesson == drawing.lesson_id and record.status == "done"


def test_start_checks_the_fixed_values_itself(monkeypatch, class_server):
    """Were a forged value to get past the widgets, Start refuses it and starts nothing."""
    from ui import lessons

    at = in_lesson()
    monkeypatch.setattr(lessons, "keep_fixed", lambda settings, put: settings)  # the widgets' guard gone
    at.session_state["train_learning_rate"] = 50.0
    at.run()
    start_button(at).click()
    at.run()
    assert not at.exception, at.exception
    errors = texts(at.error)
    assert "Not started: the lesson fixes the learning rate at 0.1, not 50. Press Reset" in errors.replace("\\", "")
    assert "run_id" not in at.session_state
    assert not Store(class_server / "runs").list_runs()


@pytest.mark.parametrize("tamper", [lambda token: token[:-4] + "AAAA", lambda token: token[: len(token) // 2],
                                    lambda token: "garbage!"])
def test_a_tampered_link_says_what_to_do_and_the_page_still_works(tamper):
    at = open_page(query={"lesson": tamper(encode(LESSON, KEY))})
    assert CHANGED in texts(at.error)
    lr = at.number_input(key="train_learning_rate")
    assert lr.value == 0.5 and not lr.disabled  # no lesson: the usual page
    assert any(w.key == "train_seed" for w in at.number_input)
    assert not start_button(at).disabled
    assert "Lesson:" not in texts(at.markdown)


def test_without_a_teacher_key_a_lesson_link_says_lessons_need_one(monkeypatch):
    monkeypatch.delenv("LRCORE_TEACHER_KEY")
    at = open_page(query={"lesson": encode(LESSON, KEY)})
    assert NO_KEY in texts(at.error)
    assert not at.number_input(key="train_learning_rate").disabled


def test_a_page_outside_the_lesson_says_so_with_a_link_back():
    at = in_lesson("pages/runs.py")
    assert "The Runs page is not part of the lesson" in texts(at.warning)
    assert not any(b.label == "Delete" for b in at.button)  # the page itself did not run
    weights = in_lesson("pages/weights.py")
    assert "not part of the lesson" not in texts(weights.warning)


def test_a_lesson_link_without_home_opens_on_train_at_the_bare_address():
    at = AppTest.from_file("../dashboard.py", default_timeout=60)
    at.query_params["lesson"] = encode(LESSON, KEY)
    at.session_state[TOKEN_KEY] = STUDENT_TOKEN
    at.run()  # no page named: what a link to http://server/?lesson=... opens
    assert not at.exception, at.exception
    assert "not part of the lesson" not in texts(at.warning)
    assert any(b.label == "Start" for b in at.button) and "Lesson: Learning rates" in texts(at.markdown)
    home = Lesson("With Home", pages=("home", "train"))
    at = open_page("pages/home.py", {"lesson": encode(home, KEY)})
    assert not any(b.label == "Start" for b in at.button)  # a lesson with Home still opens there


def test_the_lesson_stays_when_moving_to_another_page():
    at = in_lesson()
    token = encode(LESSON, KEY)
    at.query_params.clear()  # what a navigation click does to the URL
    at.switch_page("pages/weights.py")
    at.run()
    assert at.query_params["lesson"] == token
    at.switch_page("pages/runs.py")
    at.run()
    assert "not part of the lesson" in texts(at.warning)


def teacher_page(class_server) -> AppTest:
    store = Store(class_server / "runs")
    store.set_teacher(owner_id(TEACHER_TOKEN), key_fingerprint(KEY))  # this browser typed the teacher key
    return open_page(token=TEACHER_TOKEN)


def test_the_teacher_makes_a_lesson_link_from_the_page(class_server):
    at = teacher_page(class_server)
    at.number_input(key="train_learning_rate").set_value(0.2)
    at.number_input(key="train_epochs").set_value(4)
    at.run()
    at.text_input(key="lesson_title").input("Two tenths")
    at.text_area(key="lesson_text").input("Watch the loss.")
    at.selectbox(key="lesson_choice_learning_rate").select("fixed")
    at.selectbox(key="lesson_choice_epochs").select("hidden")
    at.multiselect(key="lesson_pages").set_value(["weights"])
    next(b for b in at.button if b.label == "Create link").click()
    at.run()
    assert not at.exception, at.exception
    link = at.code[0].value
    assert "/train?lesson=" in link
    lesson = decode(link.split("lesson=")[1], KEY)
    assert lesson == Lesson("Two tenths", "Watch the loss.", fixed={"learning_rate": 0.2, "epochs": 4},
                            hidden=("epochs",), pages=("train", "weights"))
    assert [saved.lesson_id for saved in Store(class_server / "runs").lessons()] == [lesson.lesson_id]


def test_a_lesson_that_cannot_be_made_says_why(class_server):
    at = teacher_page(class_server)
    next(b for b in at.button if b.label == "Create link").click()  # no title
    at.run()
    assert "the title must be 1 to 80 characters" in texts(at.error)
    assert not at.code


def test_students_and_personal_servers_get_no_lesson_maker(monkeypatch):
    assert not any(b.label == "Create link" for b in open_page().button)  # a student on a class server
    monkeypatch.delenv("LRCORE_TEACHER_KEY")
    assert not any(b.label == "Create link" for b in open_page().button)


def test_a_sweep_in_the_lesson_cannot_vary_a_fixed_setting(class_server):
    """The Sweep page (allowed by a lesson of every page) trains its own settings: a sweep over learning
    rates is refused when the lesson fixes the rate."""
    lesson = Lesson("Everything", fixed={"learning_rate": 0.1})
    at = open_page("pages/sweep.py", {"lesson": encode(lesson, KEY)})
    at.slider(key="sweep_count").set_value(2)
    at.number_input(key="sweep_epochs").set_value(1)
    at.run()
    next(b for b in at.button if b.label == "Start sweep").click()
    at.run()
    assert not at.exception, at.exception
    assert "Not started: the lesson fixes the learning rate at 0.1" in texts(at.error)
    assert "A sweep may vary only the settings the lesson leaves free" in texts(at.error)
    assert not Store(class_server / "runs").list_runs()
