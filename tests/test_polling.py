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
