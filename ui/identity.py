"""Who is looking at the page, on a class server (a teacher key is set; see lrcore.classroom).

Each browser holds a random secret token in a cookie (SameSite=Strict, a year, path /), never in
the URL, so a copied link does not carry it. The server reads it from the websocket handshake
(`st.context.cookies`); a browser without one gets it from a tiny inline component that makes the
token, writes the cookie and hands the token to this session (until then the viewer is anonymous).
Pages only ever see the public owner id, `owner_id(token)`; the token is neither shown nor stored.

Tests (AppTest cannot send cookies) put a token in `st.session_state[TOKEN_KEY]`, where the
component's answer lands too. Outside class mode there is no identity at all: `viewer()` says so
and every run may be controlled by everyone, as on a personal dashboard.
"""
from __future__ import annotations

import re

import streamlit as st

from lrcore import classroom
from lrcore.classroom import Viewer
from lrcore.store import StoreError

COOKIE = "lrcore_id"
TOKEN_KEY = "identity_token"  # this session's token when the handshake carried no cookie
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
NAMES_SECONDS = 3.0  # a classmate's new name shows on other pages within this long
ANONYMOUS_NOTE = ("This browser has no identity yet (it needs cookies): on this class server you can "
                  "watch runs, not start or change them.")

# Makes the token with crypto.getRandomValues (crypto.randomUUID needs https, and a class server
# is often plain http on the school network), keeps it in the cookie, and reports it once.
TOKEN_JS = """
export default function ({ data, setStateValue }) {
  const name = data.cookie;
  const found = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
  let token = found ? found.slice(name.length + 1) : "";
  if (!/^[A-Za-z0-9_-]{20,100}$/.test(token)) {
    const bytes = crypto.getRandomValues(new Uint8Array(24));
    token = btoa(String.fromCharCode(...bytes)).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
    document.cookie = `${name}=${token}; Max-Age=31536000; Path=/; SameSite=Strict`;
  }
  setStateValue("token", token);
}
"""


@st.cache_resource
def _token_component():
    """The inline component that gives a browser its token, registered once per server process."""
    return st.components.v2.component("lrcore-identity.token", js=TOKEN_JS)


def _token() -> str:
    """This browser's secret token ("" while it has none)."""
    for token in (st.context.cookies.get(COOKIE), st.session_state.get(TOKEN_KEY)):
        if isinstance(token, str) and TOKEN_PATTERN.match(token):  # (AppTest's cookies are mock objects)
            return token
    return ""


def viewer() -> Viewer:
    """The browser of this session: its owner id, name and whether it is the teacher."""
    if not classroom.class_mode():
        return Viewer(owner="")
    token = _token()
    if not token:
        return Viewer(owner="", class_mode=True)
    owner = classroom.owner_id(token)
    return Viewer(owner=owner, name=_names().get(owner, ""), teacher=_is_teacher(owner), class_mode=True)


def is_teacher() -> bool:
    """This browser typed the teacher key (always False outside class mode: there is no teacher there)."""
    return viewer().teacher


def can_control(run_owner: str) -> bool:
    """May this session pause, stop, change, rename or delete a run of `run_owner`?"""
    return classroom.can_control(viewer(), run_owner)


def owner_label(run_owner: str, names: dict[str, str] | None = None) -> str:
    """How a run's owner reads on a page: "you", the name they typed, else a short id ("" = nobody)."""
    if not run_owner:
        return "nobody"
    if run_owner == viewer().owner:
        return "you"
    names = _names() if names is None else names
    return names.get(run_owner) or f"student {run_owner[:4]}"


def not_yours_note(run_owner: str) -> str:
    """The one line under a run's disabled controls."""
    if not viewer().owner:
        return ANONYMOUS_NOTE
    name = _names().get(run_owner) or (f"student {run_owner[:4]}" if run_owner else "nobody (the teacher's)")
    return classroom.not_yours_note(name)


def _names() -> dict[str, str]:
    """Display names from the store, read once per page view (`sidebar` drops the copy)."""
    from ui import common

    memo = st.session_state.get("_identity_names")
    if memo is None:
        try:
            memo = _class_names(common.get_store().url)
        except (StoreError, OSError):
            memo = {}
        st.session_state._identity_names = memo
    return memo


@st.cache_data(ttl=NAMES_SECONDS, show_spinner=False)
def _class_names(store_url: str) -> dict[str, str]:
    """Every display name of the store at `store_url`, read at most once per NAMES_SECONDS by the whole
    server: 30 students pressing Start at once each read them in their page run (`_save_name` clears
    it; a name typed on another server shows here within NAMES_SECONDS)."""
    from ui import common

    return common.get_store().display_names()


def _is_teacher(owner: str) -> bool:
    """This owner typed the key that is configured now (a changed key revokes every teacher)."""
    from ui import common

    key = classroom.teacher_key()
    if key is None:
        return False
    memo = st.session_state.get("_identity_teacher")
    if memo is None or memo[0] != owner:
        try:
            memo = (owner, common.get_store().teacher_fingerprint(owner))
        except (StoreError, OSError):
            memo = (owner, "")
        st.session_state._identity_teacher = memo
    return bool(memo[1]) and memo[1] == classroom.key_fingerprint(key)


# ---------------------------------------------------------------- the sidebar

def _keep_token() -> None:
    token = st.session_state.get("identity_component", {}).get("token")
    if isinstance(token, str) and TOKEN_PATTERN.match(token):
        st.session_state[TOKEN_KEY] = token


def _save_name() -> None:
    from ui import common

    me = viewer()
    typed = st.session_state.get("identity_name", "")
    try:
        common.get_store().set_display_name(me.owner, typed)
    except (StoreError, OSError) as error:
        st.session_state._identity_problem = f"Name not saved: {error}"
        return
    st.session_state.pop("_identity_names", None)
    _class_names.clear()  # everyone's pages read the new name from now on


def _try_teacher_key() -> None:
    from ui import common

    typed = st.session_state.get("identity_teacher_key", "")
    st.session_state.identity_teacher_key = ""  # never kept in the page
    me = viewer()
    if not classroom.check_teacher_key(typed):
        st.session_state._identity_problem = "That is not the teacher key."
        return
    try:
        common.get_store().set_teacher(me.owner, classroom.key_fingerprint(classroom.teacher_key() or ""))
    except (StoreError, OSError) as error:
        st.session_state._identity_problem = f"Teacher mode not saved: {error}"
        return
    st.session_state.pop("_identity_teacher", None)


def _leave_teacher_mode() -> None:
    from ui import common

    try:
        common.get_store().set_teacher(viewer().owner, "")
    except (StoreError, OSError) as error:
        st.session_state._identity_problem = f"Could not leave teacher mode: {error}"
    st.session_state.pop("_identity_teacher", None)


def sidebar() -> None:
    """In class mode: this browser's identity, its name and the teacher key; nothing otherwise."""
    if not classroom.class_mode():
        return
    if not _token():
        _token_component()(key="identity_component", data={"cookie": COOKIE}, height=0,
                           on_token_change=_keep_token)
    st.session_state.pop("_identity_names", None)  # fresh names once per page view
    me = viewer()
    with st.sidebar:
        if not me.owner:
            st.caption(ANONYMOUS_NOTE)
            return
        title = f"You: {me.name or 'no name yet'}" + (" (teacher)" if me.teacher else "")
        with st.expander(title, icon=":material/person:", expanded=not me.name):
            st.text_input("Your name (the class sees it)", value=me.name, key="identity_name",
                          max_chars=classroom.MAX_DISPLAY_NAME, on_change=_save_name)
            if me.teacher:
                st.button("Leave teacher mode", key="identity_leave", on_click=_leave_teacher_mode)
            else:
                st.text_input("Teacher key", type="password", key="identity_teacher_key",
                              on_change=_try_teacher_key, help="Only for the teacher: see and control every run.")
        problem = st.session_state.pop("_identity_problem", None)
        if problem:
            st.error(problem)


# ---------------------------------------------------------------- starting and controlling runs

def may_start() -> bool:
    """May this session start a run? Not an anonymous browser on a class server."""
    me = viewer()
    return not me.class_mode or bool(me.owner)


def start_owner() -> str:
    """The owner of a run this session starts ("" outside class mode); PermissionError when it may not start."""
    me = viewer()
    if me.class_mode and not me.owner:
        raise PermissionError(ANONYMOUS_NOTE)
    return me.owner


def current_lesson_id() -> str:
    """The id of the lesson this session opened ("" when none)."""
    from ui import lessons  # imported here: ui.lessons asks this module who is the teacher

    return lessons.lesson_id()


def run_owner(run_id: str | None) -> str:
    """The owner of run `run_id`: from this process's live job, else from the store ("" if unknown)."""
    from ui import common

    if not run_id:
        return ""
    live = common.get_jobs().live_run(run_id)
    if live is not None:
        return live.snapshot().owner
    try:
        return common.get_store().get(run_id).owner
    except (StoreError, OSError):
        return ""


def may_control(run_id: str | None) -> bool:
    """The check an action makes itself (a crafted click on a disabled button lands here too)."""
    return can_control(run_owner(run_id))


def refuse(run_id: str | None) -> None:
    """Say why an action on someone else's run did nothing."""
    st.error(f"Nothing changed. {not_yours_note(run_owner(run_id))}", icon=":material/lock:")


def class_filter() -> bool:
    """On a class server, the Runs page's "Whole class" toggle (the teacher's starts on); True elsewhere."""
    me = viewer()
    if not me.class_mode:
        return True
    # one key per role: a student who types the teacher key gets the teacher's default (on)
    return st.toggle("Whole class", value=me.teacher, key=f"runs_whole_class_{'teacher' if me.teacher else 'student'}",
                     help="Off: only your own runs. On: every run on this server, with who started it.")
