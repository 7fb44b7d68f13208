"""Class board (AppTest): runs of two owners ranked by validation accuracy, their states, owners' names
(for the teacher or a personal server; a student sees only "you" and "classmate"), the lesson and the
time window choosing the runs, the curves with the best highlighted and the best run's weight images."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from lrcore.classroom import key_fingerprint, owner_id
from lrcore.config import TrainConfig
from lrcore.data import load_dataset
from lrcore.lessons import Lesson, encode
from lrcore.record import RunRecord
from lrcore.store import Store
from tests.store_helpers import edit_run, record_run
from ui.board import state_text
from ui.identity import TOKEN_KEY

SMALL = TrainConfig(epochs=2, learning_rate=0.5, batch_size=60, per_class_limit=30)
# Browsers' secret tokens (AppTest cannot send the cookie: ui.identity reads them from session state)
ALICE_TOKEN, BOB_TOKEN, TEACHER_TOKEN = "alice-token-0123456789", "bob-token-0123456789", "teacher-token-0123456789"
ALICE, BOB, TEACHER = owner_id(ALICE_TOKEN), owner_id(BOB_TOKEN), owner_id(TEACHER_TOKEN)
KEY = "teacher-key-for-tests"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Four finished runs trained once for the module: two of Alice, two of Bob, at different learning rates."""
    root = tmp_path_factory.mktemp("board-template")
    store, dataset = Store(root / "lrcore.db"), load_dataset("mnist-sample")
    ids = {}
    for name, config in [("alice fast", SMALL), ("alice slow", SMALL.replace(learning_rate=0.01)),
                         ("bob medium", SMALL.replace(learning_rate=0.05)),
                         ("bob wild", SMALL.replace(learning_rate=5.0))]:
        ids[name] = record_run(store, config, name, dataset)
    store.close()
    return root, ids


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("LRCORE_TEACHER_KEY", raising=False)
    return tmp_path / "runs"


@pytest.fixture
def class_runs(runs_dir, template):
    """The template's runs with owners and names; Bob's "wild" run still training on another machine,
    Alice's "slow" one crashed after its first epoch, so the board has every kind of state."""
    root, ids = template
    shutil.copytree(root, runs_dir)
    store = Store(runs_dir / "lrcore.db")
    for name, run_id in ids.items():
        edit_run(store, run_id, owner=ALICE if name.startswith("alice") else BOB)
    edit_run(store, ids["bob wild"], status="training", final={}, host="another-machine", heartbeat=time.time() + 3600,
             progress={"epoch": 2, "batch": 3, "step": 10, "batches_per_epoch": 4, "seconds_left": 5})
    edit_run(store, ids["alice slow"], status="crashed", message="the server was restarted")
    store.set_display_name(ALICE, "Alice")
    store.set_display_name(BOB, "Bob")
    return store, ids


def board_page(session: dict | None = None) -> AppTest:
    at = AppTest.from_file("../dashboard.py", default_timeout=60)
    for name, value in (session or {}).items():
        at.session_state[name] = value
    at.switch_page("pages/board.py")
    at.run()
    assert not at.exception, at.exception
    return at


def table(at: AppTest) -> list[dict]:
    """The ranking, one dict per row (st.table keeps the DataFrame's cells)."""
    frame = at.table[0].value
    return frame.data.to_dict("records") if hasattr(frame, "data") else frame.to_dict("records")


def charts(at: AppTest) -> dict[str, dict]:
    """Chart title (or "weights") -> its plotly spec."""
    out = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec["layout"].get("title", {}).get("text") or "weights"
        out[title] = spec
    return out


def test_ranking_by_best_validation_accuracy_with_owners_settings_and_states(class_runs):
    store, ids = class_runs
    expected = sorted(store.list_runs(), key=lambda run: -run.best_validation_accuracy)
    assert len({run.best_validation_accuracy for run in expected}) == 4  # the order is a real ranking
    at = board_page()
    rows = table(at)
    assert [row["Name"] for row in rows] == [run.name for run in expected]
    assert [row["Rank"] for row in rows] == ["1", "2", "3", "4"]
    by_name = {row["Name"]: row for row in rows}
    assert {name: row["Student"] for name, row in by_name.items()} == {
        "alice fast": "Alice", "alice slow": "Alice", "bob medium": "Bob", "bob wild": "Bob"}
    assert by_name["bob wild"]["State"] == "training, epoch 2 of 2"
    assert by_name["alice slow"]["State"] == "crashed after epoch 2 of 2"
    assert by_name["alice fast"]["State"] == by_name["bob medium"]["State"] == "done"
    # only what differs from the defaults: lr 0.5 is the default, the others say their learning rate
    assert "lr=" not in by_name["alice fast"]["Settings"]
    assert "lr=0.05" in by_name["bob medium"]["Settings"] and "bs=60" in by_name["bob medium"]["Settings"]
    best = expected[0]
    assert rows[0]["Best val. acc."] == f"{best.best_validation_accuracy:.1%}"
    assert rows[0]["Test acc."] == f"{best.test_accuracy:.1%}"
    assert by_name["bob wild"]["Test acc."] == "–"  # still training: no test accuracy yet
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Runs"] == "4" and metrics["Still training"] == "1"
    assert metrics["Best validation accuracy"] == f"{best.best_validation_accuracy:.1%}"


def test_curves_overlaid_with_the_best_highlighted_and_its_weight_images(class_runs):
    store, ids = class_runs
    best = max(store.list_runs(), key=lambda run: run.best_validation_accuracy)
    at = board_page()
    specs = charts(at)
    curves = next(spec for title, spec in specs.items() if "Validation accuracy" in title)
    widths = {trace["name"]: trace["line"]["width"] for trace in curves["data"]}
    assert len(widths) == 4
    assert widths.pop(f"1. {best.name}") == 6
    assert set(widths.values()) == {2.5}  # every other run thin
    weights = specs["weights"]
    assert len([trace for trace in weights["data"] if trace["type"] == "heatmap"]) == 10  # one image per digit
    assert any(f"Weights of the best run, “{best.name}”" in element.value for element in at.markdown)


def page_text(at: AppTest) -> str:
    """Everything the page wrote: markdown, captions, metrics and the table's cells."""
    parts = [str(element.value) for kind in ("markdown", "caption", "info") for element in at.get(kind)]
    parts += [str(value) for row in table(at) for value in row.values()]
    return " ".join(parts)


def test_a_student_sees_you_and_classmate_not_names(class_runs, monkeypatch):
    monkeypatch.setenv("LRCORE_TEACHER_KEY", KEY)  # class mode: this session is Alice's browser, no teacher
    at = board_page({TOKEN_KEY: ALICE_TOKEN})
    rows = table(at)
    assert {row["Name"]: row["Student"] for row in rows} == {
        "alice fast": "you", "alice slow": "you", "bob medium": "classmate", "bob wild": "classmate"}
    assert "Bob" not in page_text(at)
    assert "Names are shown to the teacher only" in page_text(at)


def test_the_teacher_sees_every_name(class_runs, monkeypatch):
    store, ids = class_runs
    monkeypatch.setenv("LRCORE_TEACHER_KEY", KEY)
    store.set_teacher(TEACHER, key_fingerprint(KEY))  # this browser typed the teacher key
    at = board_page({TOKEN_KEY: TEACHER_TOKEN})
    assert {row["Student"] for row in table(at)} == {"Alice", "Bob"}
    assert "Students see it without names" in page_text(at)


def test_a_lesson_shows_its_runs_only(class_runs, monkeypatch):
    store, ids = class_runs
    monkeypatch.setenv("LRCORE_TEACHER_KEY", KEY)
    lesson = Lesson("Learning rates", "Try a small learning rate", fixed={"epochs": 2})
    store.save_lesson(lesson, encode(lesson, KEY))
    for name in ("alice fast", "bob medium"):
        edit_run(store, ids[name], lesson=lesson.lesson_id)
    at = board_page()  # the lesson made today is where the board starts
    assert at.selectbox(key="board_lesson").value == lesson.lesson_id
    assert sorted(row["Name"] for row in table(at)) == ["alice fast", "bob medium"]
    assert at.selectbox(key="board_hours").disabled  # a lesson's runs count however old they are
    at.selectbox(key="board_lesson").select("").run()
    assert not at.exception, at.exception
    assert len(table(at)) == 4  # no lesson: every recent run


def test_older_runs_leave_the_board_unless_the_window_grows(class_runs):
    store, ids = class_runs
    edit_run(store, ids["bob medium"], created=time.time() - 3 * 3600)
    at = board_page()
    assert "bob medium" not in [row["Name"] for row in table(at)]
    at.selectbox(key="board_hours").select(4).run()
    assert "bob medium" in [row["Name"] for row in table(at)]


def test_no_runs_yet_says_they_will_appear(runs_dir):
    at = board_page()
    assert "No runs started in the last 2 hours yet" in at.info[0].value
    assert not at.table


@pytest.mark.parametrize("status, epochs, progress, expected", [
    ("queued", 0, {}, "queued"),
    ("starting", 0, {}, "starting"),
    ("training", 0, {}, "training, evaluating the untrained model"),
    ("training", 2, {"epoch": 3}, "training, epoch 3 of 5"),
    ("paused", 2, {"epoch": 3}, "paused in epoch 3 of 5"),
    ("diverged", 2, {}, "diverged"),
    ("done", 5, {}, "done"),
    ("stopped", 0, {}, "stopped"),  # taken out of the queue before it trained
    ("stopped", 2, {}, "stopped after epoch 2 of 5"),
    ("crashed", 1, {}, "crashed after epoch 1 of 5"),
])
def test_state_words(status, epochs, progress, expected):
    rows = [{"epoch": epoch, "validation_accuracy": 0.5} for epoch in range(epochs + 1)] if epochs else []
    run = RunRecord("20261201-100000-abcdef", "a run", TrainConfig(epochs=5), status=status, epochs=rows,
                    progress=progress)
    assert state_text(run) == expected
