"""The outcome line of a run (ui.run_summary.show_outcome) for the moments between its events."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest


def outcome_app(final: dict) -> AppTest:
    def app(final: dict) -> None:
        from lrcore.config import TrainConfig
        from lrcore.record import RunRecord
        from ui.run_summary import show_outcome

        record = RunRecord(run_id="r1", name="too high", config=TrainConfig(learning_rate=50.0), status="diverged",
                           message="loss blew up to 228 at epoch 1 with lr 50: try a smaller learning rate",
                           batches_per_epoch=63, final=final)
        show_outcome(record)

    # 60 s: the first test of a fresh process imports torch and the ui package inside the run (3 s by default)
    return AppTest.from_function(app, kwargs={"final": final}, default_timeout=60).run()


def test_a_diverged_run_whose_kept_weights_are_not_known_yet_does_not_guess_where_they_are_from():
    # Diverged comes at once, Finished (with the kept epoch and batch) a moment later
    at = outcome_app({})
    [message] = [error.value for error in at.error]
    assert message.startswith("Training diverged: loss blew up to 228")
    assert "the numbers for them follow as soon as the run has finished" in message
    assert "every number below" not in message  # nothing below is for them yet


def test_a_finished_diverged_run_names_the_weights_it_kept():
    at = outcome_app({"kept_epoch": 1, "kept_batch": 40, "test_accuracy": 0.5})
    [message] = [error.value for error in at.error]
    assert "from epoch 1, batch 40 of 63; every number below is for them" in message


def test_a_diverged_run_is_settling_until_its_final_numbers_are_in():
    """The Train and Weights pages keep polling a settling run: they stopped at the Diverged event before,
    and the page kept the in-between message for good when Finished came a moment later (CI saw it)."""
    from lrcore.config import TrainConfig
    from lrcore.record import RunRecord

    record = RunRecord(run_id="r1", name="too high", config=TrainConfig(learning_rate=50.0), status="diverged")
    assert not record.active and record.settling
    record.final = {"kept_epoch": 1, "kept_batch": 40}
    assert not record.settling
    for status in ("training", "done", "stopped", "crashed"):
        assert not RunRecord(run_id="r2", name="x", config=TrainConfig(), status=status).settling
