"""A class server (lrcore.classroom, ui.identity): the teacher key, owner ids, who may control a run,
and the Train page's controls for a run that is not yours (AppTest).

AppTest cannot send cookies: a session's browser token is put where the identity component's
answer lands, `st.session_state[identity.TOKEN_KEY]` (see ui/identity.py).
"""
from __future__ import annotations

import pytest

from lrcore import classroom
from lrcore.classroom import Viewer, can_control, check_teacher_key, class_mode, owner_id, teacher_key
from lrcore.store import Store
from tests.apptest_helpers import open_page, wait_for_run
from ui import common, identity

PAGE = "pages/train.py"
KEY = "correct horse battery staple"
ANA, BEN, TEACHER = "ana-token-" + "a" * 20, "ben-token-" + "b" * 20, "teacher-token-" + "t" * 20


@pytest.fixture(autouse=True)
def no_key(tmp_path, monkeypatch):
    """No key anywhere unless a test sets one; runs go to a temporary store; cwd without secrets."""
    monkeypatch.delenv(classroom.TEACHER_KEY_ENV, raising=False)
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LRCORE_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def class_server(monkeypatch):
    monkeypatch.setenv(classroom.TEACHER_KEY_ENV, KEY)


# ---------------------------------------------------------------- the rules

def test_the_teacher_key_comes_from_the_environment_then_the_secrets_file(no_key, monkeypatch):
    assert teacher_key() is None and not class_mode()
    secrets = no_key / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text('teacher_key = "  from-file  "\n')
    assert teacher_key() == "from-file" and class_mode()
    monkeypatch.setenv(classroom.TEACHER_KEY_ENV, " from-env ")
    assert teacher_key() == "from-env"
    monkeypatch.setenv(classroom.TEACHER_KEY_ENV, "   ")  # blank: as if unset
    assert teacher_key() == "from-file"
    for text in ('teacher_key = ""\n', "teacher_key = 42\n", "not toml at all [\n", 'other = "x"\n'):
        secrets.write_text(text)
        assert teacher_key() is None, text


def test_check_teacher_key(class_server, monkeypatch):
    assert check_teacher_key(KEY) and check_teacher_key(f"  {KEY} ")
    assert not check_teacher_key(KEY[:-1]) and not check_teacher_key("") and not check_teacher_key(None)
    monkeypatch.delenv(classroom.TEACHER_KEY_ENV)
    assert not check_teacher_key(KEY)  # no key configured: nobody is the teacher


def test_owner_ids_are_short_public_hashes_of_the_token():
    assert owner_id(ANA) == owner_id(ANA) != owner_id(BEN)
    assert len(owner_id(ANA)) == 16 and ANA not in owner_id(ANA)
    assert classroom.key_fingerprint(KEY) != classroom.key_fingerprint(KEY + "!")


@pytest.mark.parametrize("viewer, run_owner, allowed", [
    (Viewer(owner=""), "someone", True),  # a personal dashboard: everyone controls every run
    (Viewer(owner="a", class_mode=True), "a", True),
    (Viewer(owner="a", class_mode=True), "b", False),
    (Viewer(owner="a", class_mode=True), "", False),  # nobody's run (before class mode): the teacher's to manage
    (Viewer(owner="", class_mode=True), "", False),  # anonymous owns nothing, not even nobody's runs
    (Viewer(owner="t", teacher=True, class_mode=True), "b", True),
])
def test_who_may_control_a_run(viewer, run_owner, allowed):
    assert can_control(viewer, run_owner) is allowed


def test_display_names_are_cleaned_and_limited():
    assert classroom.clean_display_name("  Ana \t María\n") == "Ana María"
    assert classroom.clean_display_name("Zoë\x00\x07") == "Zoë"
    for bad, message in (("   ", "cannot be empty"), ("x" * 41, "at most 40 characters")):
        with pytest.raises(ValueError, match=message):
            classroom.clean_display_name(bad)


# ---------------------------------------------------------------- the Train page on a class server

def train_page(token: str | None, query: dict | None = None):
    return open_page(PAGE, query, {identity.TOKEN_KEY: token} if token else None)


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def forge(widget):
    """A crafted websocket message pressing a disabled widget: AppTest's own refusal to touch it is
    lifted, so the message reaches the server (which must change nothing)."""
    widget.proto.disabled = False
    return widget


def page_text(at) -> str:
    return " | ".join(str(e.value) for kind in (at.info, at.error, at.caption, at.warning) for e in kind)


def start_on_page(at, epochs: int):
    at.number_input(key="train_epochs").set_value(epochs).run()
    button(at, "Start").click().run()
    assert not at.exception, at.exception
    return common.get_jobs().live_run(at.session_state["run_id"])


def test_a_personal_dashboard_has_no_identity_and_runs_have_no_owner():
    at = train_page(None)
    assert not at.sidebar.expander and "no identity" not in page_text(at)
    worker = start_on_page(at, 1)
    worker.join(60)
    assert worker.snapshot().owner == "" and not worker.snapshot().name.endswith("#1")
    assert Store().get(worker.run_id).owner == ""


def test_an_anonymous_browser_may_start_nothing_and_is_told_why(class_server):
    at = train_page(None)
    assert button(at, "Start").disabled
    assert "no identity yet" in page_text(at)
    forge(button(at, "Start")).click().run()  # forged: the disabled button pressed anyway
    assert not at.exception
    assert "run_id" not in at.session_state and not Store().list_runs()


def test_another_students_run_is_read_only_even_for_a_forged_click_and_the_teacher_can_stop_it(class_server):
    ana = train_page(ANA)
    worker = start_on_page(ana, 500)
    run_id = worker.run_id
    record = wait_for_run(worker, lambda r: r.epochs, "the epoch-0 evaluation")
    assert record.owner == owner_id(ANA) and record.name == "SGD lr=0.5 epochs=500 #1"  # numbered per owner
    Store().set_display_name(owner_id(ANA), "Ana")
    identity._class_names.clear()  # typed elsewhere: pages here would show it within NAMES_SECONDS
    assert not button(ana, "Pause").disabled and not button(ana, "Stop").disabled

    ben = train_page(BEN, {"run": run_id})
    assert ben.session_state["run_id"] == run_id
    assert button(ben, "Pause").disabled and button(ben, "Stop").disabled and button(ben, "Apply").disabled
    assert ben.number_input(key="train_live_lr").disabled
    assert not button(ben, "Start").disabled  # Ben may start his own with these settings
    assert "This run belongs to Ana: you can watch it, not change it. Start your own with these settings." \
        in page_text(ben)
    # forged clicks on the disabled buttons (Streamlit drops them; the actions check again anyway)
    forge(button(ben, "Pause")).click().run()
    assert not worker.control.paused
    forge(ben.number_input(key="train_live_lr")).set_value(0.01).run()
    forge(button(ben, "Apply")).click().run()
    forge(button(ben, "Stop")).click().run()
    button(ben, "Reset").click().run()  # forgets the run for Ben, never stops Ana's
    assert not ben.exception and worker.snapshot().active and not worker.snapshot().lr_changes

    teacher = train_page(TEACHER, {"run": run_id})
    assert button(teacher, "Stop").disabled  # not yet the teacher
    teacher.text_input(key="identity_teacher_key").set_value("wrong").run()
    assert any("not the teacher key" in e.value for e in teacher.error) and button(teacher, "Stop").disabled
    teacher.text_input(key="identity_teacher_key").set_value(KEY).run()
    assert KEY not in repr(teacher.session_state)  # the typed key is not kept in the session
    assert not [w for w in teacher.text_input if w.key == "identity_teacher_key"]  # "Leave teacher mode" instead
    assert "(teacher)" in teacher.sidebar.expander[0].label
    button(teacher, "Stop").click().run()
    worker.join(60)
    assert worker.snapshot().status == "stopped"
    assert Store().teacher_fingerprint(owner_id(TEACHER)) == classroom.key_fingerprint(KEY)


def test_a_changed_teacher_key_revokes_the_teacher(class_server, monkeypatch):
    Store().set_teacher(owner_id(TEACHER), classroom.key_fingerprint(KEY))
    assert "(teacher)" in train_page(TEACHER).sidebar.expander[0].label
    monkeypatch.setenv(classroom.TEACHER_KEY_ENV, "a new key for a new term")
    assert "(teacher)" not in train_page(TEACHER).sidebar.expander[0].label


def test_a_name_typed_once_is_kept_for_the_browser(class_server):
    at = train_page(ANA)
    assert at.sidebar.expander[0].label == "You: no name yet"
    at.text_input(key="identity_name").set_value("  Ana  ").run()
    assert Store().display_names() == {owner_id(ANA): "Ana"}
    assert train_page(ANA).sidebar.expander[0].label == "You: Ana"  # a new session of the same browser
    at.text_input(key="identity_name").set_value("   ").run()
    assert "Name not saved: a name cannot be empty" in [e.value for e in at.sidebar.error]
    assert Store().display_names() == {owner_id(ANA): "Ana"}


def test_another_students_sweep_cannot_be_paused_stopped_changed_or_deleted(class_server):
    ana = open_page("pages/sweep.py", None, {identity.TOKEN_KEY: ANA})
    ana.slider(key="sweep_count").set_value(2)
    ana.number_input(key="sweep_epochs").set_value(200)
    ana.text_input(key="sweep_batch_sizes").set_value("1")  # 6,400 steps an epoch: it trains while Ben looks
    ana.run()
    button(ana, "Start sweep").click().run()
    sweep_id = ana.session_state["sweep_id"]
    job = common.get_jobs().get(sweep_id)
    assert {record.owner for record in job.records()} == {owner_id(ANA)}
    try:
        ben = open_page("pages/sweep.py", {"sweep": sweep_id}, {identity.TOKEN_KEY: BEN})
        for key in ("sweep_pause", "sweep_stop"):
            assert ben.button(key=key).disabled
            forge(ben.button(key=key)).click().run()
        assert not [w for w in ben.button if w.key == "sweep_lr_apply"]  # no learning-rate change offered
        assert "This run belongs to" in page_text(ben)
        assert job.active and not job.control.paused
        assert ben.button(key="sweep_delete").disabled  # still training, and not his
    finally:
        job.stop()
        job.join(60)
    ben.run()
    assert ben.button(key="sweep_delete").disabled  # finished, still not his
    forge(ben.button(key="sweep_delete")).click().run()
    assert not [w for w in ben.button if w.key == "sweep_delete_yes"]
    assert len(Store().list_runs(group_id=sweep_id)) == len(job.run_ids)  # nothing deleted
    ana.run()
    assert not ana.button(key="sweep_delete").disabled
