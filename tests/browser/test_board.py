"""Class board in headless Chromium on a class server (a teacher key is set): two students' browsers
each start a short run on mnist-sample; the teacher's board, opened before, shows both appear, train
and finish, ranked, with the students' names, without anyone touching it; it reads well at 1024x768
and 390x844 (test_layout's checks)."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from lrcore.classroom import key_fingerprint, owner_id
from lrcore.store import Store
from tests.browser.conftest import screenshot, start_streamlit, stop, wait_for_app
from tests.browser.test_layout import CHECKED, LAYOUT_PROBLEMS
from tests.browser.test_train_weights import main_area

KEY = "board-test-teacher-key"
COOKIE = "lrcore_id"  # ui.identity.COOKIE
SHORT = "epochs=4&batch_size=60&per_class=30"  # a few seconds of training each
ROWS = """() => [...document.querySelectorAll('[data-testid="stTable"] tbody tr')]
  .map(row => [...row.querySelectorAll('td')].map(cell => cell.innerText.trim()))"""
# test_layout's checks on the board itself (the collapsed sidebar of a phone is laid out narrow, off screen)
IN_MAIN = ", ".join(f"[data-testid='stMain'] {selector.strip()}" for selector in CHECKED.split(","))
HEADER = """() => [...document.querySelectorAll('[data-testid="stTable"] thead th')].map(cell => cell.innerText.trim())"""


@pytest.fixture(scope="module")
def class_server(tmp_path_factory):
    """A server of its own, in class mode."""
    data_dir = tmp_path_factory.mktemp("board-data")
    process, url = start_streamlit(data_dir, tmp_path_factory.mktemp("logs") / "streamlit.log",
                                   extra_env={"LRCORE_TEACHER_KEY": KEY})
    yield url, data_dir
    stop(process)


def browser_owner(context, page) -> str:
    """The owner id of this browser context, once the identity component has given it its cookie."""
    page.wait_for_function(f"() => document.cookie.includes('{COOKIE}=')", timeout=60_000)
    token = next(cookie["value"] for cookie in context.cookies() if cookie["name"] == COOKIE)
    return owner_id(token)


def board_rows(page) -> list[dict[str, str]]:
    header = page.evaluate(HEADER)
    return [dict(zip(header[-len(cells):], cells)) for cells in page.evaluate(ROWS)]


def wait_for_rows(page, condition, what: str, timeout: float = 180) -> list[dict[str, str]]:
    """Read the board's table (never clicking) until `condition(rows)` holds."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        rows = board_rows(page)
        if condition(rows):
            return rows
        page.wait_for_timeout(250)
    raise AssertionError(f"{what}: the board still shows {rows}")


def test_the_board_shows_two_students_runs_live(browser, class_server):
    url, data_dir = class_server
    contexts = [browser.new_context(viewport=size) for size in
                ({"width": 1024, "height": 768}, {"width": 1400, "height": 1000}, {"width": 1400, "height": 1000})]
    try:
        board, ada, ben = (context.new_page() for context in contexts)
        for page in (board, ada, ben):
            page.set_default_timeout(60_000)
        # Each browser gets its identity on its first page view; the store then knows their names and the teacher.
        board.goto(url)
        ada.goto(f"{url}/train?{SHORT}")
        ben.goto(f"{url}/train?{SHORT}&lr=0.05")
        teacher, ada_id, ben_id = (browser_owner(context, page) for context, page in zip(contexts, (board, ada, ben)))
        store = Store(data_dir / "runs")
        store.set_teacher(teacher, key_fingerprint(KEY))  # what typing the key in the sidebar records
        store.set_display_name(ada_id, "Ada")
        store.set_display_name(ben_id, "Ben")

        board.goto(f"{url}/board")
        board.get_by_role("heading", name="Class board").wait_for()
        expect(board.get_by_text(re.compile("No runs started in the last 2 hours yet"))).to_be_visible()
        board.evaluate("() => { window.boardNotReloaded = true; }")  # gone if the page reloaded

        for page in (ada, ben):
            page.reload()  # the identity in this session's cookie from the start
            page.get_by_role("button", name=re.compile("Start$")).wait_for()
            wait_for_app(page)
            main_area(page).get_by_role("button", name=re.compile("Start$")).click()
        for page in (ada, ben):
            page.wait_for_url(re.compile(r"[?&]run="), timeout=60_000)

        rows = wait_for_rows(board, lambda rows: {row.get("Student") for row in rows} == {"Ada", "Ben"},
                             "both students' runs listed")
        assert len(rows) == 2
        rows = wait_for_rows(board, lambda rows: len(rows) == 2 and all(row["State"] == "done" for row in rows),
                             "both runs done", timeout=300)
        assert board.evaluate("() => window.boardNotReloaded === true")  # it updated itself, nobody clicked
        store.close()
        stored = {run.owner: run for run in Store(data_dir / "runs").list_runs()}
        ranking = sorted(stored.values(), key=lambda run: -run.best_validation_accuracy)
        names = {ada_id: "Ada", ben_id: "Ben"}
        assert [row["Student"] for row in rows] == [names[run.owner] for run in ranking]
        assert [row["Best val. acc."] for row in rows] == [f"{run.best_validation_accuracy:.1%}" for run in ranking]
        assert "lr=0.05" in next(row["Settings"] for row in rows if row["Student"] == "Ben")
        expect(board.locator('[data-testid="stMetricValue"]').nth(1)).to_have_text("0")  # still training: none
        best = ranking[0]
        expect(board.get_by_text(f"Weights of the best run, “{best.name}”")).to_be_visible()
        wait_for_app(board)
        screenshot(board, "class-board-1024")  # the whole board: its charts below the fold are drawn too
        legend = board.evaluate("""() => {
          const chart = [...document.querySelectorAll('.js-plotly-plot')].find(p => p.layout && p.layout.title
                         && String(p.layout.title.text).includes('Validation accuracy'));
          return chart ? chart.data.map(trace => [trace.name, trace.line.width]) : null;
        }""")
        assert sorted(legend) == sorted([[f"1. {best.name}", 6], [f"2. {ranking[1].name}", 2.5]])
        # Readable on the projector and on a phone: no label, heading or number cut or broken mid-word.
        problems = [f"1024x768: {problem}" for problem in board.evaluate(LAYOUT_PROBLEMS, IN_MAIN)]
        phone = contexts[0].new_page()  # the teacher's phone: a fresh page opens with the sidebar closed
        phone.set_viewport_size({"width": 390, "height": 844})
        phone.goto(f"{url}/board")
        phone.get_by_text(f"Weights of the best run, “{best.name}”").wait_for()
        wait_for_app(phone)
        problems += [f"390x844: {problem}" for problem in phone.evaluate(LAYOUT_PROBLEMS, IN_MAIN)]
        screenshot(phone, "class-board-390")
        assert not problems, "\n".join(problems)
    finally:
        for context in contexts:
            context.close()
