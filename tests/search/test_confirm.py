"""search.confirm: the top trials trained again with other seeds, ranked by the mean (search/confirmation.py,
its events, tracking's execution runs and leaderboard, the CLI's summary and `runs`)."""

from __future__ import annotations

import contextlib
import io
import statistics
import time

import pytest
from mlflow.tracking import MlflowClient

from textsweep import cli
from textsweep.config import parse_config
from textsweep.errors import ConfigError
from textsweep.events import TrialObserver
from textsweep import tracking
from textsweep.search import build_tuner, confirm_top_trials, fit_arguments


@pytest.mark.parametrize(("confirm", "fault"), [
    ({"top": 0}, "search.confirm.top: top is how many of the best trials to train again: 1 or more (got 0)"),
    ({"seeds": 1}, "search.confirm.seeds: seeds counts a trial's executions, its original one included: 2 or more "
                   "(got 1); write `confirm: false` to turn confirmation off"),
    ({"top": 2, "seed": 3}, "unknown key 'search.confirm.seed'; did you mean 'seeds'?"),
    ({"seeds": True}, "search.confirm.seeds: true is a boolean, not a number"),
    ("yes", "search.confirm: write false, true, or a section such as {top: 3, seeds: 3}; got 'yes'"),
])
def test_a_bad_confirm_section_is_a_config_error_naming_the_key_and_the_fix(confirm, fault):
    with pytest.raises(ConfigError) as error:
        parse_config({"name": "c", "search": {"confirm": confirm}}, source="c.yaml")
    assert str(error.value).startswith("c.yaml: invalid sweep file:") and fault in str(error.value)


def test_confirmation_is_on_by_default_only_where_it_at_most_doubles_the_search():
    def confirmation(max_trials, **search):
        return parse_config({"name": "c", "search": {"max_trials": max_trials, **search}}).search.confirmation

    assert confirmation(5) is None  # 3 trials x 2 further seeds would more than double 5 trials
    assert (confirmation(6).top, confirmation(6).seeds) == (3, 3)
    assert confirmation(40, confirm=False) is None
    assert (confirmation(1, confirm={"top": 2, "seeds": 4}).top, confirmation(1, confirm={"seeds": 4}).seeds) == (2, 4)
    assert confirmation(1, confirm=True).seeds == 3  # written out, it runs whatever the budget
    shown = parse_config({"name": "c"}).to_yaml()
    assert "  confirm:\n    top: 3\n    seeds: 3\n    when: auto\n" in shown  # `sweeps show` states the default
    assert parse_config(parse_config({"name": "c", "search": {"confirm": False}}).model_dump()).search.confirmation is None


class Recorder(TrialObserver):
    """Every confirmation event, in order, as (method name, event)."""

    def __init__(self):
        self.events = []

    def confirmation_begins(self, event):
        self.events.append(("confirmation_begins", event))

    def execution_begins(self, execution):
        self.events.append(("execution_begins", execution))

    def execution_epoch_ends(self, event):
        self.events.append(("execution_epoch_ends", event))

    def execution_ends(self, event):
        self.events.append(("execution_ends", event))

    def trial_confirmed(self, event):
        self.events.append(("trial_confirmed", event))

    def confirmation_ends(self, event):
        self.events.append(("confirmation_ends", event))


def test_the_top_trials_run_again_with_the_next_seeds_and_a_passed_deadline_leaves_the_rest_for_later(
    tmp_path, encoded_reviews, tiny_config
):
    # 2 trials, both confirmed: their order shows the ranking (the CLI sweep below shows a trial left out)
    config = tiny_config(epochs=1, max_trials=2, confirm={"top": 2, "seeds": 3})
    tuner = build_tuner(config, tmp_path / "t", num_classes=len(encoded_reviews.classes))
    tuner.search(encoded_reviews, **fit_arguments(config))
    # By best_val_accuracy, a tie to the earlier trial (the same choice after any resume).
    finished = sorted(tuner.oracle.trials.values(), key=lambda trial: (-trial.score, int(trial.trial_id)))
    best_two = [trial.trial_id for trial in finished[:2]]

    late = Recorder()  # the search spent search.max_time: confirmation starts nothing
    end = confirm_top_trials(tuner, config, encoded_reviews, [late], deadline=time.time() - 1)
    assert [name for name, _ in late.events] == ["confirmation_begins", "confirmation_ends"]
    assert end.stopped_by_time and end.executions_done == 0 and end.executions_planned == 4 and end.confirmed == ()
    assert late.events[0][1].executions_left == 4

    recorder = Recorder()
    end = confirm_top_trials(tuner, config, encoded_reviews, [recorder])
    began = [(event.trial_id, event.seed, event.trial.params.seed) for name, event in recorder.events if name == "execution_begins"]
    # Round by round (each trial's seed + 1, then + 2), every execution seeded as its params say.
    assert began == [(best_two[0], 43, 43), (best_two[1], 43, 43), (best_two[0], 44, 44), (best_two[1], 44, 44)]
    ends = [event for name, event in recorder.events if name == "execution_ends"]
    assert [e.status for e in ends] == ["COMPLETED"] * 4
    epochs = [event for name, event in recorder.events if name == "execution_epoch_ends"]
    assert len(epochs) == 4 and all("val_accuracy" in e.logs for e in epochs)
    assert [e.score for e in ends] == [e.logs["val_accuracy"] for e in epochs]  # 1 epoch: its value is the best
    assert not end.stopped_by_time and end.executions_done == 4
    for confirmed in end.confirmed:
        original = tuner.oracle.get_trial(confirmed.trial_id).score
        further = [e.score for e in ends if e.execution.trial_id == confirmed.trial_id]
        assert confirmed.seeds == (42, 43, 44) and confirmed.scores == (original, *further)
        assert confirmed.mean == pytest.approx(statistics.fmean(confirmed.scores))
        assert confirmed.std == pytest.approx(statistics.stdev(confirmed.scores))

    again = Recorder()  # a resume: the finished executions are recorded in the tuner's state
    end = confirm_top_trials(tuner, config, encoded_reviews, [again])
    assert not any(name == "execution_begins" for name, _ in again.events) and end.executions_done == 4


# ---------------------------------------------------------------- through the CLI, into MLflow

CONFIRMED = "confirmed"


@pytest.fixture(scope="module")
def confirmed_sweep(tmp_path_factory, review_rows, write_sweep_file, use_own_store):
    """One sweep by the CLI: 3 trials of 1 epoch, the top 2 confirmed with 2 seeds each; the folder,
    the sweep file and what the CLI printed.

    `cli.main` in this process: the same command as `textsweep sweep`, without a process's seconds
    of imports. The resume below, whose subject is a second run of the command, runs as a process.
    """
    folder = tmp_path_factory.mktemp("confirm")
    review_rows(400, seed=7).to_csv(folder / "reviews.csv", index=False)
    config = write_sweep_file(
        folder / "confirm.yaml", name=CONFIRMED, source=str(folder / "reviews.csv"),
        defaults={"max_features": 300, "embed_dim": 8, "lstm_out": 4, "batch_size": 64, "epochs": 1, "recurrent_dropout": 0.0},
        search={"algorithm": "random", "max_trials": 3, "reference": False, "confirm": {"top": 2, "seeds": 2},
                "space": {"embed_dim": {"values": [4, 8]}, "lstm_out": {"values": [2, 4]}, "batch_size": {"values": [32, 64]}}},
    )
    printed, errors = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        use_own_store(patch, folder)
        exit_code = cli.main(["sweep", "--config", str(config), "--quiet"])
    assert exit_code == 0, errors.getvalue()[-3000:]
    return folder, config, printed.getvalue()


def runs_by_kind(folder, kind):
    client = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(CONFIRMED).experiment_id
    return client, client.search_runs([experiment], f"tags.`textsweep.kind` = '{kind}'")


def test_confirmed_trials_hold_their_executions_and_the_mean_chooses_the_best(
    confirmed_sweep, monkeypatch, use_own_store, capsys
):
    folder, _, summary = confirmed_sweep
    client, trials = runs_by_kind(folder, "trial")
    _, executions = runs_by_kind(folder, "execution")
    sweep = runs_by_kind(folder, "sweep")[1][0]
    finished = {t.info.run_id: t for t in trials if t.info.status == "FINISHED"}
    assert len(finished) == 3
    top_two = {run_id: finished[run_id] for run_id in {e.data.tags["mlflow.parentRunId"] for e in executions}}
    others = [t for run_id, t in finished.items() if run_id not in top_two]
    # The top 2 by best_val_accuracy (ties with 1 epoch on 400 rows are common: at least as good as the rest).
    assert len(top_two) == 2 and min(t.data.metrics["best_val_accuracy"] for t in top_two.values()) >= \
        max(t.data.metrics["best_val_accuracy"] for t in others)

    # 2 trials x (2 - 1) further executions, each nested under its trial's run, seeded 42 + 1, FINISHED.
    assert sorted((e.data.tags["mlflow.parentRunId"], e.data.params["seed"], e.info.status) for e in executions) == \
        sorted((run_id, "43", "FINISHED") for run_id in top_two)
    for execution in executions:
        trial = top_two[execution.data.tags["mlflow.parentRunId"]]
        assert execution.data.params["trial_id"] == execution.data.tags["textsweep.trial_id"] == trial.data.tags["textsweep.trial_id"]
        assert execution.data.tags["textsweep.sweep_run_id"] == sweep.info.run_id
        assert len(client.get_metric_history(execution.info.run_id, "val_accuracy")) == 1  # per epoch, as trials log
        assert not client.list_artifacts(execution.info.run_id)  # no model: the trial's own is the one registered
        # The trial run's mean and std are over its own execution and this one.
        scores = [trial.data.metrics["best_val_accuracy"], execution.data.metrics["best_val_accuracy"]]
        assert trial.data.metrics["mean_val_accuracy"] == pytest.approx(statistics.fmean(scores))
        assert trial.data.metrics["std_val_accuracy"] == pytest.approx(statistics.stdev(scores))
        assert trial.data.metrics["seeds"] == 2
    assert not any("mean_val_accuracy" in t.data.metrics for t in others)
    assert sweep.data.tags["textsweep.confirmation"] == "complete: 2 of 2 further executions, 2 trials ranked by mean_val_accuracy"

    use_own_store(monkeypatch, folder)  # the leaderboard and `runs` read MLflow's process-wide store
    table = tracking.leaderboard(client, sweep.info.experiment_id, sweep.info.run_id, "val_accuracy")
    confirmed = table[table["mean_val_accuracy"].notna()]
    assert list(table.index[:2]) == list(confirmed.index)  # confirmed trials first ...
    assert list(confirmed["mean_val_accuracy"]) == sorted(confirmed["mean_val_accuracy"], reverse=True)  # ... by mean
    chosen = table.iloc[0]
    assert set(confirmed["run_id"]) == set(top_two) and chosen["seeds"] == 2
    assert chosen["mean_val_accuracy"] == top_two[chosen["run_id"]].data.metrics["mean_val_accuracy"]
    assert chosen["std_val_accuracy"] == top_two[chosen["run_id"]].data.metrics["std_val_accuracy"]
    assert sweep.data.tags["textsweep.best_run_id"] == chosen["run_id"]

    shown = f"{chosen['mean_val_accuracy']:.4f} ± {chosen['std_val_accuracy']:.4f} (2 seeds)"
    choice = f"the best trial is chosen by its mean_val_accuracy over seeds (search.confirm), not by one seed's " \
             f"best_val_accuracy: trial {chosen['trial_id']}, {chosen['mean_val_accuracy']:.4f}"
    assert shown in summary and choice in summary
    assert "confirmation: 2 of 2 further executions; 2 trials ranked by the mean val_accuracy over their seeds" in summary
    capsys.readouterr()
    exit_code = cli.main(["runs", CONFIRMED])  # `textsweep runs`, in this process
    runs = capsys.readouterr()
    assert exit_code == 0, runs.err[-2000:]
    assert "mean_val_accuracy ± std (seeds)" in runs.out and shown in runs.out and choice in runs.out


def test_a_resumed_sweep_does_not_run_finished_executions_again(confirmed_sweep, run_textsweep):
    folder, config, _ = confirmed_sweep
    _, before = runs_by_kind(folder, "execution")
    result = run_textsweep(["sweep", "--config", str(config), "--quiet"], folder)
    assert result.returncode == 0 and "(resumed)" in result.stdout, result.stderr[-3000:]
    _, after = runs_by_kind(folder, "execution")
    assert sorted((r.info.run_id, r.info.status) for r in after) == sorted((r.info.run_id, "FINISHED") for r in before)
    assert "confirmation: 2 of 2 further executions" in result.stdout
