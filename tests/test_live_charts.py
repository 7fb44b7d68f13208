"""The Train page's live charts (ECharts options): what they show, how they follow a run, what they send."""
import json
import math

from ui import live_charts


class Record:
    """The fields of lrcore.record.RunRecord that LiveCharts reads."""

    def __init__(self, run_id, epochs, batches):
        self.run_id, self.batches_per_epoch = run_id, 10
        self.config = type("Config", (), {"epochs": epochs})()
        self.epochs = [{"epoch": e, "train_loss": 1 / (e + 1), "validation_loss": 1 / (e + 1),
                        "train_accuracy": e / 10, "validation_accuracy": e / 10} for e in range(batches // 10 + 1)]
        self.lr_changes = []
        self.batch_steps = list(range(1, batches + 1))
        self.batch_losses = [1 / step for step in self.batch_steps]
        self.status, self.final = "training", {}


def series(option: dict, name: str) -> dict:
    return next(item for item in option["series"] if item["name"] == name)


def test_live_charts_follow_a_run_and_start_afresh_for_a_new_one():
    live = live_charts.LiveCharts()
    first = live.options(Record("a", 5, 20))
    later = live.options(Record("a", 5, 35))
    steps = list(range(1, 36))
    assert later["batch_loss"] == live_charts.batch_loss_option(steps, [1 / s for s in steps], (), 50)
    record = Record("a", 5, 35)
    assert later["accuracy"] == live_charts.epoch_option(record.epochs, "accuracy", (), 10, 5)
    assert later["loss"] is not first["loss"]  # a new epoch: drawn again
    same = live.options(Record("a", 5, 35))  # nothing new: the same options, nothing rebuilt
    assert all(same[name] is later[name] for name in same)
    other = live.options(Record("b", 5, 10))
    assert len(other["batch_loss"]["series"][0]["data"]) == 10
    assert other["batch_loss"]["series"][1]["data"][0] == [1, 1.0]  # the average starts afresh


def test_epoch_charts_span_the_planned_run_and_show_accuracy_in_percent():
    rows = [{"epoch": e, "train_loss": 2.3 / (e + 1), "validation_loss": math.nan if e == 3 else 2.4 / (e + 1),
             "train_accuracy": e / 40, "validation_accuracy": 0.91234} for e in range(6)]
    accuracy = live_charts.epoch_option(rows, "accuracy", total_epochs=10)
    assert accuracy["xAxis"]["min"] == 0 and accuracy["xAxis"]["max"] == 10 and accuracy["xAxis"]["interval"] == 1
    assert series(accuracy, "validation")["data"][-1] == [5, 91.234]
    assert accuracy["yAxis"]["axisLabel"]["formatter"] == "{value}%"
    loss = live_charts.epoch_option(rows, "loss", total_epochs=10)
    assert series(loss, "validation")["data"][3] == [3, None]  # a non-finite loss is a gap
    json.dumps(loss, allow_nan=False)  # sendable: JSON has no NaN
    # a long run: the axis grows with the points and stops labelling every epoch
    many = [{**rows[0], "epoch": e} for e in range(48)]
    long = live_charts.epoch_option(many, "loss", total_epochs=300)
    assert "interval" not in long["xAxis"] and long["xAxis"]["max"] == 47
    # every epoch is in the text description a screen reader reads (ECharts reads 10 by default)
    assert long["aria"]["label"]["data"]["maxCount"] == 48
    assert "interval" not in live_charts.epoch_option(rows, "loss", total_epochs=20)["xAxis"]  # whole steps that fit


def test_learning_rate_changes_are_dotted_lines_labelled_with_the_new_rate():
    rows = [{"epoch": e, "train_loss": 1.0, "validation_loss": 1.0, "train_accuracy": 0.5,
             "validation_accuracy": 0.5} for e in range(4)]
    changes = [{"step": 250, "epoch": 3, "old": 0.5, "new": 0.1}]
    marks = live_charts.epoch_option(rows, "loss", changes, 100, 5)["series"][0]["markLine"]
    assert marks["lineStyle"]["type"] == "dotted"
    assert marks["data"] == [{"xAxis": 2.5, "label": {"formatter": "lr → 0.1"}}]  # during epoch 3, step 250 of 100 a epoch
    batch = live_charts.batch_loss_option(list(range(1, 301)), [1.0] * 300, changes, 500)
    assert batch["series"][0]["markLine"]["data"][0]["xAxis"] == 250
    assert "markLine" not in live_charts.batch_loss_option(list(range(1, 301)), [1.0] * 300)["series"][0]


def test_full_batch_runs_draw_each_step_solid_without_an_average():
    option = live_charts.batch_loss_option([1, 2, 3], [2.3, 1.0, 0.7], full_batch=True, total_steps=10)
    assert [item["name"] for item in option["series"]] == ["loss of the step"]
    assert option["series"][0]["showSymbol"] is True and option["legend"]["show"] is False
    assert option["title"]["text"] == "Loss per step (full batch)"
    assert option["xAxis"]["max"] == 10


def test_the_waiting_charts_show_the_axes_the_run_will_fill_and_a_note():
    waiting = live_charts.waiting_options(5, 50, "no run yet: press Start")
    assert waiting["loss"]["xAxis"]["max"] == 5 and waiting["batch_loss"]["xAxis"]["max"] == 50
    assert (waiting["accuracy"]["yAxis"]["min"], waiting["accuracy"]["yAxis"]["max"]) == (0, 100)
    assert (waiting["loss"]["yAxis"]["min"], waiting["loss"]["yAxis"]["max"]) == live_charts.WAITING_LOSS_RANGE
    assert all(option["graphic"][0]["style"]["text"] == "no run yet: press Start" for option in waiting.values())
    assert live_charts.waiting_options(5, 50, "no run yet: press Start")["loss"] is waiting["loss"]  # made once
    assert "graphic" not in live_charts.epoch_option([], "loss", total_epochs=5)  # the cached ones are copies


def test_a_run_ended_inside_an_epoch_gets_a_point_for_its_kept_weights():
    record = Record("r", epochs=5, batches=10)  # epochs 0 and 1 evaluated
    kept = {"kept_step": 15, "train_loss": 0.3, "train_accuracy": 0.4, "validation_loss": 0.35,
            "validation_accuracy": 0.38}
    record.status, record.final = "diverged", kept
    options = live_charts.LiveCharts().options(record)
    assert series(options["accuracy"], "validation")["data"] == [[0, 0.0], [1, 10.0], [1.5, 38.0]]
    record.final = {**kept, "kept_step": 10}  # stopped exactly at the end of epoch 1: nothing to add
    assert len(live_charts.epoch_rows(record)) == 2


def test_live_charts_redraw_without_animation_and_offer_zoom():
    """Redrawn every second, an animation would never settle; the toolbox zooms as plotly's modebar did."""
    option = live_charts.epoch_option([], "loss")
    assert option["animation"] is False
    assert set(option["toolbox"]["feature"]) == {"dataZoom", "restore"}
    assert option["tooltip"] == {"trigger": "axis", "valueFormatter": "%.4f"}
    assert live_charts.epoch_option([], "accuracy")["tooltip"]["valueFormatter"] == "%.2f%%"
