"""Status is a str Enum: stored JSON, the pages' literals and f-strings see the plain value."""
import json

from lrcore.status import Status


def test_status_behaves_as_its_string():
    assert Status.DONE == "done" and "crashed" in (Status.CRASHED,)
    assert {"paused": "Paused"}[Status.PAUSED] == "Paused"  # same hash: dicts keyed by strings work
    assert f"{Status.STOPPED}" == str(Status.STOPPED) == "stopped"  # not "Status.STOPPED" (Python 3.11+)
    assert f"{Status.DONE:>6}" == "  done"
    assert json.dumps({"status": Status.RUNNING}) == '{"status": "running"}'
    assert Status(json.loads('"diverged"')) is Status.DIVERGED
