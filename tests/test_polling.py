"""The poll period setting (ui/polling.py): what LRCORE_POLL_SECONDS may hold, and what a bad value gives."""
import pytest

from ui import polling


@pytest.mark.parametrize("text, expected", [(None, 1.0), ("", 1.0), ("  ", 1.0), ("0.5", 0.5), ("2", 2.0),
                                            ("0.2", 0.2), ("10", 10.0)])
def test_valid_values_and_default(text, expected):
    assert polling.poll_seconds(text) == expected


@pytest.mark.parametrize("text", ["0", "0.1", "11", "-1", "nan", "inf", "fast", "1s"])
def test_bad_values_fall_back_to_the_default_with_a_message(text, capsys):
    assert polling.poll_seconds(text) == polling.DEFAULT_SECONDS
    message = capsys.readouterr().out
    assert "LRCORE_POLL_SECONDS" in message and repr(text) in message and "from 0.2 to 10" in message


def test_sidebar_polls_half_as_often_as_a_live_page():
    assert polling.SIDEBAR_SECONDS == 2 * polling.LIVE_SECONDS


def test_many_watching_sessions_stretch_the_poll_period_within_the_servers_budget(monkeypatch):
    seen: dict[str, float] = {}
    monkeypatch.setattr(polling, "_watchers", lambda: (seen, __import__("threading").Lock()))
    now = __import__("time").monotonic()
    assert polling.live_seconds() == polling.LIVE_SECONDS  # nobody watching
    for count, expected in ((5, 1.0), (12, 1.0), (30, 2.5), (60, 5.0), (200, 5.0)):
        seen.clear()
        seen.update({f"session-{n}": now for n in range(count)})
        assert polling.live_seconds() == expected, count
    seen.clear()
    seen.update({f"old-{n}": now - polling.WATCH_WINDOW - 1 for n in range(100)})  # left long ago
    assert polling.watchers() == 0 and polling.live_seconds() == polling.LIVE_SECONDS


def test_a_watching_page_counts_itself_once_per_session():
    from streamlit.testing.v1 import AppTest

    def page():
        from ui import polling

        polling.watching()
        polling.watching()  # the same session again: still one
        import streamlit as st

        st.write(f"watchers: {polling.watchers()}")

    polling._watchers.clear()  # no watcher left from another test of this process
    first = AppTest.from_function(page, default_timeout=60).run()
    second = AppTest.from_function(page, default_timeout=60).run()
    assert first.markdown[0].value == "watchers: 1"
    assert second.markdown[0].value == "watchers: 2"  # a second session of the same server process
