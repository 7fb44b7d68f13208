"""A lesson on the pages: opened by `?lesson=TOKEN`, kept for the session, and the teacher's maker.

    current_lesson()           # the session's Lesson, or None (reads and checks ?lesson= first)
    navigation_plan()          # where a bare address leads (go_to it), and which pages the navigation shows
    page_allowed(page)         # False (and says so, with a link back) for a page outside the lesson
    lesson_widget(...)         # setting_widget, disabled for a fixed setting and left out for a hidden one
    keep_fixed(...)            # the Train page's settings with the lesson's fixed values put back
    refusal(config)            # the fixed values checked again when Start is pressed (check_start: a sweep's)
    lesson_maker(settings)     # the teacher's "Make a lesson link" expander on the Train page

The lesson itself (what it fixes, its signature) is lrcore/lessons.py; this module only shows it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import streamlit as st

from lrcore import classroom
from lrcore.lessons import PAGES, Lesson, LessonError, decode, encode
from lrcore.settings import BY_NAME, BY_PARAM
from lrcore.store import StoreError
from ui.settings import setting_widget
from ui.text import md_escape

PARAM = "lesson"  # the URL query parameter that carries a lesson's token
NO_KEY = ("This is a lesson link, but lessons need a teacher key on this server and it has none: the dashboard "
          "works as usual, without the lesson. Ask your teacher to start the server with LRCORE_TEACHER_KEY set.")
FIXED_NOTE = ":material/lock: fixed by the lesson"
CHOICES = {"free": "free", "fixed": "fixed", "hidden": "fixed and hidden"}


# ---------------------------------------------------------------- the session's lesson

def current_lesson() -> Lesson | None:
    """The lesson this session is in. A `?lesson=` token it has not seen is checked first: a good one
    enters that lesson, a bad one leaves the session as it was and says why (`show_refusal`)."""
    state = st.session_state
    token = st.query_params.get(PARAM)
    if token and token != state.get("lesson_token") and token != state.get("lesson_refused", ("",))[0]:
        key = classroom.teacher_key()
        try:
            lesson = decode(token, key) if key else None
        except LessonError as error:
            state.lesson_refused = (token, str(error))
        else:
            if lesson is None:
                state.lesson_refused = (token, NO_KEY)
            else:
                state.lesson, state.lesson_token = lesson, token
                state.pop("lesson_refused", None)
    lesson = state.get("lesson")
    if lesson is not None and st.query_params.get(PARAM) != state.lesson_token and not refused_in_url():
        # moving between pages clears the URL's parameters: put the lesson back, so a refresh keeps it
        st.query_params[PARAM] = state.lesson_token
    return lesson


def refused_in_url() -> bool:
    refused = st.session_state.get("lesson_refused")
    return refused is not None and st.query_params.get(PARAM) == refused[0]


def show_refusal() -> None:
    """While the URL holds a lesson token that was refused: say why, above the page (which still works)."""
    if refused_in_url():
        message = st.session_state.lesson_refused[1]
        st.error(message if message == NO_KEY else f"{message} Until then the dashboard works as usual.",
                 icon=":material/link_off:")


def leave_lesson() -> None:
    for key in ("lesson", "lesson_token"):
        st.session_state.pop(key, None)
    st.query_params.pop(PARAM, None)


# ---------------------------------------------------------------- navigation

def navigation_plan() -> tuple[str, dict[str, str]]:
    """The page a bare address leads to ("home", or Train when the lesson leaves Home out: `go_to` it)
    and each page's visibility in the navigation: pages the lesson leaves out are hidden (still reachable
    by their address, where `page_allowed` stops them). Also says, above the page, why a lesson link was
    refused."""
    lesson = current_lesson()
    show_refusal()
    if lesson is None:
        return "home", {name: "visible" for name in PAGES}
    return landing_page(lesson), {name: "visible" if lesson.allows_page(name) else "hidden" for name in PAGES}


def landing_page(lesson: Lesson) -> str:
    """Home if the lesson has it, else Train (it carries the lesson's banner and settings), else its first page."""
    return next(name for name in ("home", "train", *PAGES) if lesson.allows_page(name))


def go_to(name: str) -> None:
    """Open page `name` ("train") of the lesson, its link in the address bar (ends this script run)."""
    st.switch_page(f"pages/{name}.py", query_params={PARAM: st.session_state.lesson_token})


def page_allowed(page) -> bool:
    """Whether the page (st.Page) may run in this session's lesson; if not, say so with a link back."""
    lesson = current_lesson()
    if lesson is None or lesson.allows_page(page.url_path or "home"):  # Home's address is the bare one
        return True
    st.warning(f"The {page.title} page is not part of the lesson “{md_escape(lesson.title, 80)}”.",
               icon=":material/block:")
    st.page_link(f"pages/{landing_page(lesson)}.py", label="Back to the lesson", icon=":material/arrow_back:",
                 query_params={PARAM: st.session_state.lesson_token})
    return False


# ---------------------------------------------------------------- the Train page

def banner() -> None:
    """The lesson's title and instruction text (the teacher's markdown), at the top of Train."""
    lesson = current_lesson()
    if lesson is None:
        return
    with st.container(border=True):
        st.markdown(f":material/school: **Lesson: {md_escape(lesson.title, 80)}**")
        if lesson.text:
            st.markdown(lesson.text)  # signed by the teacher's key: the teacher's own markdown
        if _is_teacher():
            st.button("Leave the lesson", icon=":material/logout:", on_click=leave_lesson, key="lesson_leave",
                      help="Only you see this button (the teacher): back to every page and setting.")


def is_fixed(name: str) -> bool:
    lesson = current_lesson()
    return lesson is not None and lesson.is_fixed(name)


def fixed_values() -> dict[str, Any]:
    """The settings the session's lesson fixes ({} outside a lesson): every run started in it uses them."""
    lesson = current_lesson()
    return dict(lesson.fixed) if lesson is not None else {}


def is_hidden(name: str) -> bool:
    lesson = current_lesson()
    return lesson is not None and lesson.is_hidden(name)


def fixed_note(name: str) -> None:
    """The note under a control the lesson fixes."""
    if is_fixed(name):
        st.caption(FIXED_NOTE)


def lesson_widget(widget: Callable | None, name: str, key: str, help_extra: str = "", **overrides: Any) -> Any:
    """`ui.settings.setting_widget` as the lesson allows: not drawn when hidden (its value stays in the
    session), disabled with a note when fixed, as usual otherwise."""
    if is_hidden(name):
        return st.session_state.get(key)
    if not is_fixed(name):
        return setting_widget(widget, name, key, help_extra, **overrides)
    value = setting_widget(widget, name, key, help_extra, **{**overrides, "disabled": True})
    st.caption(FIXED_NOTE)
    return value


def keep_fixed(settings: dict, put: Callable[[dict], None]) -> dict:
    """`settings` with the lesson's fixed values; when they differed (a crafted widget value, Reset, a
    new dataset's defaults), `put` puts the fixed ones back into the widgets first."""
    lesson = current_lesson()
    if lesson is None:
        return settings
    wanted = {**settings, **{name: value for name, value in lesson.fixed.items() if name in settings}}
    if lesson.mismatches(settings):
        put(wanted)
    return wanted


def url_notes(params: Mapping[str, str]) -> list[str]:
    """One line per URL parameter that tries to change a setting the lesson fixes (it is ignored)."""
    lesson = current_lesson()
    if lesson is None:
        return []
    notes = []
    for param, setting in BY_PARAM.items():
        if param in params and lesson.is_fixed(setting.name):
            try:
                same = setting.parse(params[param]) == lesson.fixed[setting.name]
            except ValueError:
                same = False
            if not same:
                notes.append(f"The link's {md_escape(param)}={md_escape(params[param], 40)} was ignored: the lesson "
                             f"fixes the {setting.long} at {setting.text(lesson.fixed[setting.name])}.")
    return notes


def refusal(*configs) -> str | None:
    """Why the lesson refuses to train `configs` (a fixed setting with another value), else None."""
    lesson = current_lesson()
    if lesson is None:
        return None
    for config in configs:
        values = config.to_dict()
        wrong = lesson.mismatches(values)
        if wrong:
            return "Not started: the lesson fixes " + "; ".join(
                f"the {BY_NAME[name].long} at {BY_NAME[name].text(lesson.fixed[name])}, not "
                f"{md_escape(BY_NAME[name].text(values.get(name)), 40)}" for name in wrong) + \
                ". Press Reset to get the lesson's settings back."
    return None


def check_start(*configs) -> None:
    """PermissionError (saying which setting) when the lesson's fixed values refuse `configs` (a sweep's)."""
    message = refusal(*configs)
    if message:
        raise PermissionError(message.replace("Press Reset to get the lesson's settings back.",
                                              "A sweep may vary only the settings the lesson leaves free."))


def lesson_id() -> str:
    """The current lesson's id for new runs ("" outside a lesson)."""
    lesson = current_lesson()
    return lesson.lesson_id if lesson is not None else ""


# ---------------------------------------------------------------- the teacher's maker

def _is_teacher() -> bool:
    from ui.identity import is_teacher

    return is_teacher()


def server_base() -> str:
    """scheme://host[:port][/base path] of this server as the browser sees it ("" when unknown)."""
    url = st.context.url
    if not url:
        return ""
    parts = urlsplit(url)
    base_path = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"{parts.scheme}://{parts.netloc}" + (f"/{base_path}" if base_path else "")


def lesson_link(token: str) -> str:
    return f"{server_base()}/train?{PARAM}={token}"


def lesson_maker(settings: Mapping[str, Any]) -> None:
    """For the teacher: make a lesson from the settings on the page (each free, fixed or fixed and
    hidden), an instruction text and the pages allowed; show its link and save it in the store."""
    if not classroom.class_mode() or not _is_teacher():
        return
    made = st.session_state.get("lesson_made")
    with st.expander("Make a lesson link", icon=":material/school:", expanded=made is not None):
        with st.form("lesson_form", border=False):
            st.text_input("Title", key="lesson_title", max_chars=80, placeholder="e.g. Learning rates")
            st.text_area("Instructions (markdown)", key="lesson_text", max_chars=1000, height=100,
                         placeholder="e.g. Train with three learning rates and compare the loss curves.")
            st.caption("Each setting: free for the students, fixed to its value on this page, or fixed and hidden.")
            columns = st.columns(3)
            names = [name for name in settings if name in BY_NAME and BY_NAME[name].label]
            for index, name in enumerate(names):
                setting = BY_NAME[name]
                columns[index % 3].selectbox(f"{setting.label} ({setting.text(settings[name])})", list(CHOICES),
                                             format_func=CHOICES.get, key=f"lesson_choice_{name}")
            st.multiselect("Pages the students see", list(PAGES), default=list(PAGES), format_func=PAGES.get,
                           key="lesson_pages", help="Train is always one of them: the link opens it. The Sweep page "
                           "trains settings of its own (not the lesson's): leave it out to keep the fixed ones.")
            submitted = st.form_submit_button("Create link", type="primary", icon=":material/link:")
        if submitted:
            made = make_lesson(settings)
        if made is not None:
            title, link = made
            st.markdown(f"Link for **{md_escape(title, 80)}**: students who open it get this lesson.")
            st.code(link, language=None, wrap_lines=True)


def make_lesson(settings: Mapping[str, Any]) -> tuple[str, str] | None:
    """The form's lesson: its link (kept in the session to show again), saved in the store; None and a
    message when it cannot be made."""
    from ui import common

    state = st.session_state
    choices = {name: state.get(f"lesson_choice_{name}", "free") for name in settings if name in BY_NAME}
    pages = list(state.get("lesson_pages") or ())
    if pages and "train" not in pages:
        pages.append("train")  # the link opens Train
    try:
        lesson = Lesson(title=state.get("lesson_title") or "", text=state.get("lesson_text") or "",
                        fixed={name: settings[name] for name, choice in choices.items() if choice != "free"},
                        hidden=tuple(name for name, choice in choices.items() if choice == "hidden"),
                        pages=() if set(pages) >= set(PAGES) else tuple(pages))
        token = encode(lesson, classroom.teacher_key() or "")
    except LessonError as error:
        st.error(str(error))
        return None
    try:
        common.get_store().save_lesson(lesson, token)
    except (StoreError, OSError) as error:  # the link works all the same: it carries the whole lesson
        st.warning(f"The link works, but the class board cannot list this lesson: {md_escape(error, 300)}")
    state.lesson_made = (lesson.title, lesson_link(token))
    return state.lesson_made
