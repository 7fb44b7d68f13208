"""Lessons on a real class server: the teacher (who typed the teacher key) makes a lesson link on the Train
page; a student who opens it in another browser gets the fixed settings (disabled), not the hidden one, only
the lesson's pages, and keeps the lesson across pages; a tampered link is refused with a clear message."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import (open_train, screenshot, screenshots_at_sizes, set_number, start_streamlit, stop,
                                    wait_for_app)

KEY = "browser-test-teacher-key"




def choose(page, label: str, option: str) -> None:
    box = page.get_by_test_id("stSelectbox").filter(has_text=label)
    expect(box).to_have_count(1)
    for _attempt in range(3):  # a page run arriving while the list is open closes it: open it again
        wait_for_app(page)
        box.locator("input").click()
        listed = page.get_by_role("option", name=option, exact=True)
        try:
            listed.wait_for(timeout=10_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: the list was closed under us
            page.keyboard.press("Escape")
            continue
        listed.click()
        break
    expect(box.locator("input")).to_have_value(option)


def nav_titles(page) -> list[str]:
    # each link's text is its icon's ligature name, then its title
    return [text.strip().split("\n")[-1] for text in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]



def make_lesson_link(teacher, url: str) -> str:
    """The teacher types the key, sets lr 0.1 and 3 epochs, and makes a lesson: lr and epochs fixed, the
    seed fixed and hidden, only Train and Weights."""
    open_train(teacher, f"{url}/train")
    key_box = teacher.get_by_label("Teacher key", exact=True)
    key_box.wait_for(timeout=60_000)  # the identity cookie is set, the sidebar offers the key
    key_box.fill(KEY)
    key_box.press("Enter")
    teacher.get_by_text("Make a lesson link").wait_for(timeout=60_000)
    wait_for_app(teacher)
    set_number(teacher, "Exact learning rate", "0.1")
    set_number(teacher, "Epochs", "3")
    teacher.get_by_text("Make a lesson link").click()
    teacher.get_by_label("Title", exact=True).wait_for()
    wait_for_app(teacher)
    teacher.get_by_label("Title", exact=True).fill("Slow and steady")
    teacher.get_by_label("Instructions (markdown)", exact=True).fill("Press **Start** and watch the loss.")
    choose(teacher, "Learning rate (0.1)", "fixed")
    choose(teacher, "Epochs (3)", "fixed")
    choose(teacher, "Seed (0)", "fixed and hidden")
    pages = teacher.get_by_test_id("stMultiSelect")
    pages.get_by_role("button", name=re.compile("clear", re.I)).first.click()
    pages.locator("input").fill("Weights")
    pages.locator("input").press("Enter")
    teacher.keyboard.press("Escape")
    teacher.get_by_role("button", name="Create link").click()
    teacher.locator('[data-testid="stCode"]').wait_for(timeout=30_000)
    wait_for_app(teacher)
    link = teacher.locator('[data-testid="stCode"]').inner_text().strip()
    assert link.startswith(f"{url}/train?lesson=")
    screenshots_at_sizes(teacher, "lesson-teacher")
    return link


def test_a_teachers_lesson_link_fixes_hides_and_limits_pages_and_a_tampered_one_is_refused(browser, tmp_path):
    process, url = start_streamlit(tmp_path / "data", tmp_path / "streamlit.log",
                                   extra_env={"LRCORE_TEACHER_KEY": KEY})
    teacher = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    student = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    for page in (teacher, student):
        page.set_default_timeout(30_000)
    try:
        link = make_lesson_link(teacher, url)

        open_train(student, link)
        expect(student.get_by_text("Lesson: Slow and steady")).to_be_visible()
        lr = student.get_by_label("Exact learning rate", exact=True)
        expect(lr).to_have_value("0.1")
        expect(lr).to_be_disabled()
        expect(student.get_by_label("Epochs", exact=True)).to_have_value("3")
        expect(student.get_by_label("Epochs", exact=True)).to_be_disabled()
        expect(student.get_by_label("Batch size", exact=True)).to_be_enabled()
        expect(student.get_by_label("Seed", exact=True)).to_have_count(0)
        expect(student.get_by_text("fixed by the lesson").first).to_be_visible()
        assert nav_titles(student) == ["Train", "Weights"]
        screenshots_at_sizes(student, "lesson-student")

        student.locator('[data-testid="stSidebarNav"] a', has_text="Weights").click()
        student.wait_for_url(re.compile(r"/weights\?.*lesson="), timeout=30_000)  # the lesson stays in the URL
        wait_for_app(student)
        student.goto(f"{url}/runs?{link.split('?')[1]}")  # a direct link to a page outside the lesson
        expect(student.get_by_text("The Runs page is not part of the lesson")).to_be_visible(timeout=60_000)
        expect(student.get_by_role("link", name="Back to the lesson")).to_be_visible()
        screenshot(student, "lesson-not-part")
        student.goto(f"{url}/?{link.split('?')[1]}")  # the bare address: this lesson leaves Home out, so Train
        expect(student.get_by_text("Lesson: Slow and steady")).to_be_visible(timeout=60_000)
        expect(student.get_by_label("Exact learning rate", exact=True)).to_be_disabled()
        expect(student.get_by_text("not part of the lesson")).to_have_count(0)

        tampered = link[:-6] + ("AAAAAA" if not link.endswith("AAAAAA") else "BBBBBB")
        fresh = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        open_train(fresh, tampered)
        expect(fresh.get_by_text("This lesson link was changed or cut off: ask your teacher for the link "
                                 "again.")).to_be_visible()
        expect(fresh.get_by_label("Exact learning rate", exact=True)).to_be_enabled()  # the page still works
        assert "Runs" in nav_titles(fresh)
        screenshots_at_sizes(fresh, "lesson-tampered")
        fresh.context.close()
    finally:
        teacher.context.close()
        student.context.close()
        stop(process)
