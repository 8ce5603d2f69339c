import io
import time

import keras_tuner as kt
import pytest

from conftest import review_rows
from textsweep.config import parse_config
from textsweep.data import prepare
from textsweep.errors import OPTION_STYLE, ConfigError
from textsweep.events import TrialObserver
from textsweep.search.progress import ProgressBar
from textsweep.search.state import check_resumable, sweep_identity, write_state
from textsweep.search.tuner import build_tuner, fit_arguments
from textsweep.text import encode_splits

SPACE = {"embed_dim": {"min": 8, "max": 32, "step": 8}, "batch_size": {"values": [32, 64]}}
TINY = {"max_features": 300, "embed_dim": 4, "lstm_out": 4, "batch_size": 64, "recurrent_dropout": 0.0, "spatial_dropout": 0.0}


def config_for(algorithm, **search):
    return parse_config({"name": "t", "defaults": {"epochs": 4, "embed_dim": 8, "batch_size": 32}, "search": {"algorithm": algorithm, "max_trials": 5, "space": SPACE} | search})


def tiny_config(algorithm="random", epochs=2, **search):
    return parse_config({
        "name": "t", "data": {"source": "rows.csv"}, "defaults": TINY | {"epochs": epochs},
        "search": {"algorithm": algorithm, "max_trials": 3, "space": {"lstm_out": {"values": [2, 3, 4]}}} | search,
    })


@pytest.fixture(scope="module")
def encoded():
    """Real reviews, encoded once: 300 short Rotten Tomatoes snippets train a tiny LSTM in ~0.2 s an epoch."""
    return encode_splits(prepare(review_rows(300), tiny_config().data))


class Recorder(TrialObserver):
    """An observer of the search: when each trial began and each epoch ended (time.time())."""

    def __init__(self):
        self.began, self.epochs_ended = {}, {}

    def trial_begins(self, trial):
        self.began[trial.trial_id] = time.time()

    def epoch_ends(self, event):
        self.epochs_ended.setdefault(event.trial.trial_id, []).append(time.time())


@pytest.mark.parametrize(
    "algorithm, oracle",
    [
        ("random", kt.oracles.RandomSearchOracle),
        ("bayesian", kt.oracles.BayesianOptimizationOracle),
        ("hyperband", kt.oracles.HyperbandOracle),
        ("grid", kt.oracles.GridSearchOracle),
    ],
)
def test_each_algorithm_builds_its_keras_tuner_oracle(tmp_path, algorithm, oracle):
    tuner = build_tuner(config_for(algorithm), tmp_path / "t")
    assert isinstance(tuner.oracle, oracle)  # textsweep's subclass: the wall-clock budget, the grid's resume
    assert tuner.oracle.objective.name == "val_accuracy" and tuner.oracle.objective.direction == "max"
    assert tuner.oracle.max_trials == 5  # hyperband too: textsweep caps its brackets at the budget
    assert tuner.oracle.max_consecutive_failed_trials == 3
    names = {hp.name for hp in tuner.oracle.hyperparameters.space}
    assert names == {"embed_dim", "batch_size"}
    if algorithm == "hyperband":
        assert tuner.oracle.max_epochs == 4
        assert isinstance(tuner, kt.Hyperband)  # its brackets' epochs and weight loading stay KerasTuner's


def test_loss_objective_is_minimised(tmp_path):
    tuner = build_tuner(config_for("random", objective="val_loss"), tmp_path / "t")
    assert tuner.oracle.objective.direction == "min"


# ---------------------------------------------------------------- grid resume (KerasTuner issue 1055)


GRID_2X2 = {"embed_dim": {"values": [8, 16]}, "batch_size": {"values": [32, 64]}}


def finish(oracle, trial, score=0.5):
    """What a tuner does at the end of a trial, without training."""
    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    oracle.save()


def grid_points(oracle):
    return sorted(tuple(t.hyperparameters.values[k] for k in ("embed_dim", "batch_size")) for t in oracle.trials.values())


def grid_left_by_a_dead_process(directory, finished: int):
    """A 2x2 grid sweep whose process ran `finished` trials and died; its config and tuner."""
    config = config_for("grid", max_trials=10, space=GRID_2X2)
    first = build_tuner(config, directory)
    first.save()
    for _ in range(finished):
        finish(first.oracle, first.oracle.create_trial("tuner0"))
    return config, first


def test_grid_resumed_after_a_dead_process_makes_every_point_once(tmp_path):
    config, first = grid_left_by_a_dead_process(tmp_path / "t", finished=2)
    running = first.oracle.create_trial("tuner0")  # the process dies during this trial

    resumed = build_tuner(config, tmp_path / "t").oracle
    retried = resumed.create_trial("tuner0")
    assert retried.trial_id == running.trial_id
    finish(resumed, retried)
    while (trial := resumed.create_trial("tuner0")).status == "RUNNING":  # KerasTuner 1.4.8: KeyError here
        finish(resumed, trial)
    assert trial.status == "STOPPED"
    assert grid_points(resumed) == [(8, 32), (8, 64), (16, 32), (16, 64)]
    assert all(t.status == "COMPLETED" for t in resumed.trials.values())
    again = build_tuner(config, tmp_path / "t").oracle  # a finished grid stays finished
    assert again.create_trial("tuner0").status == "STOPPED" and len(again.trials) == 4


def test_grid_resumed_between_trials_finishes_the_grid(tmp_path):
    # KerasTuner 1.4.8 alone answers STOPPED here: its queue of points to extend starts empty.
    config, _ = grid_left_by_a_dead_process(tmp_path / "t", finished=3)
    resumed = build_tuner(config, tmp_path / "t").oracle
    last = resumed.create_trial("tuner0")
    assert last.status == "RUNNING" and last.trial_id == "03"
    finish(resumed, last)
    assert resumed.create_trial("tuner0").status == "STOPPED"
    assert grid_points(resumed) == [(8, 32), (8, 64), (16, 32), (16, 64)]


# ---------------------------------------------------------------- the wall-clock budget


class BudgetRunsOutAtEpoch(Recorder):
    """The wall-clock budget runs out at the end of epoch `budget_epoch` of the first trial.

    The deadline is set to that moment, so the test waits on an event (an epoch's end), not on a
    guess at how many epochs this machine trains in so many seconds.
    """

    def __init__(self, budget_epoch: int):
        super().__init__()
        self.budget_epoch = budget_epoch
        self.tuner = None

    def epoch_ends(self, event):
        super().epoch_ends(event)
        if event.epoch == self.budget_epoch and len(self.began) == 1:
            self.tuner.deadline = self.tuner.oracle.deadline = time.time()


def test_the_deadline_stops_the_running_trial_after_its_epoch_and_keeps_it(tmp_path, encoded):
    config = tiny_config(epochs=200, max_trials=20)  # 200 epochs: only the budget can end this trial
    recorder = BudgetRunsOutAtEpoch(budget_epoch=2)
    tuner = build_tuner(config, tmp_path / "t", observers=[recorder], deadline=time.time() + 3600)
    recorder.tuner = tuner
    tuner.search(encoded, **fit_arguments(config))
    assert list(recorder.began) == ["00"]  # no trial started after the deadline
    assert len(recorder.epochs_ended["00"]) == 3  # stopped at the end of the epoch in which the budget ran out
    stopped = tuner.oracle.get_trial("00")
    assert stopped.status == "COMPLETED" and stopped.score is not None and stopped.best_step <= 2  # kept, best epoch
    assert set(tuner.oracle.trials) == {"00"} and tuner.stopped_by_time


def test_a_deadline_passed_before_the_first_trial_still_gives_one_epoch_of_it(tmp_path, encoded):
    """search.max_time shorter than the sweep's start (1s): the sweep still ends with a result, which
    measures how long an epoch takes; no second trial starts."""
    config = tiny_config(epochs=200, max_trials=20)
    recorder = Recorder()
    tuner = build_tuner(config, tmp_path / "t", observers=[recorder], deadline=time.time() - 1)
    tuner.search(encoded, **fit_arguments(config))
    assert list(recorder.began) == ["00"] and len(recorder.epochs_ended["00"]) == 1
    assert tuner.oracle.get_trial("00").status == "COMPLETED" and tuner.stopped_by_time


def test_a_chief_s_oracle_past_its_deadline_hands_out_only_a_first_result(tmp_path):
    oracle = build_tuner(config_for("random"), tmp_path / "t", deadline=time.time() - 1).oracle
    first = oracle.create_trial("tuner0")
    assert first.status == "RUNNING"  # no trial has finished yet: the first one still starts
    assert oracle.create_trial("tuner1").status == "STOPPED"  # one is running: it will be the result
    first.status = "FAILED"  # ... unless it fails: then another takes its place
    oracle.end_trial(first)
    second = oracle.create_trial("tuner0")
    assert second.status == "RUNNING" and second.trial_id != first.trial_id
    finish(oracle, second)
    assert oracle.create_trial("tuner0").status == "STOPPED" and len(oracle.trials) == 2 and oracle.stopped_by_time


def test_a_chief_s_oracle_stops_handing_out_trials_at_the_deadline(tmp_path):
    oracle = build_tuner(config_for("random"), tmp_path / "t", deadline=time.time() + 600).oracle
    running = oracle.create_trial("tuner0")
    assert running.status == "RUNNING"
    oracle.deadline = time.time() - 1
    assert oracle.create_trial("tuner0") is running  # a worker asking again for the trial it runs
    assert oracle.create_trial("tuner1").status == "STOPPED"
    assert "tuner1" not in oracle.tuner_ids and oracle.stopped_by_time  # so the chief can exit
    finish(oracle, running)
    assert oracle.create_trial("tuner0").status == "STOPPED" and len(oracle.trials) == 1


def test_a_search_within_its_time_is_not_stopped_by_it(tmp_path, encoded):
    config = tiny_config(epochs=1, max_trials=2)
    tuner = build_tuner(config, tmp_path / "t", deadline=time.time() + 600)
    tuner.search(encoded, **fit_arguments(config))
    assert len(tuner.oracle.trials) == 2 and not tuner.stopped_by_time


# ---------------------------------------------------------------- progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_pipe_is_one_line_per_trial(tmp_path, encoded):
    config = tiny_config(algorithm="grid", epochs=2, max_trials=5)  # a 3-point grid ends before the budget
    stream = io.StringIO()
    tuner = build_tuner(config, tmp_path / "t", observers=[ProgressBar(stream=stream)])
    tuner.search(encoded, **fit_arguments(config))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 3
    assert lines[0].startswith("trial 1/3 lstm_out=4 | done val_accuracy ") and "| best val_accuracy " in lines[0]  # trial 0: the defaults
    assert "ETA" in lines[0] and "ETA" not in lines[2]


def test_progress_on_a_terminal_is_a_bar_that_resumes_where_the_sweep_was(tmp_path, encoded):
    config = tiny_config(epochs=2, max_trials=3)
    build_tuner(config.model_copy(update={"search": config.search.model_copy(update={"max_trials": 2})}),
                tmp_path / "t").search(encoded, **fit_arguments(config))
    stream = Terminal()
    tuner = build_tuner(config, tmp_path / "t", observers=[ProgressBar(stream=stream)])
    tuner.search(encoded, **fit_arguments(config))
    shown = stream.getvalue()
    assert "\r" in shown  # tqdm redraws the bar in place
    assert " 67%|" in shown and "100%|" in shown  # it started at the 2 trials already done
    assert "trial 3/3" in shown and "epoch 2/2 val_accuracy" in shown and "trial 3/3 lstm_out=" in shown
    assert "[00:" in shown and "<" in shown  # tqdm's elapsed<remaining


def test_quiet_progress_shows_nothing(tmp_path, encoded):
    config = tiny_config(epochs=1, max_trials=1)
    stream = Terminal()
    build_tuner(config, tmp_path / "t", observers=[ProgressBar(stream=stream, quiet=True)]).search(
        encoded, **fit_arguments(config))
    assert stream.getvalue() == ""


# ---------------------------------------------------------------- resume state


def test_resume_refuses_a_changed_space_or_data(tmp_path):
    config = config_for("random")
    identity = sweep_identity(config, "fp1")
    write_state(tmp_path, identity | {"sweep_run_id": "abc"})
    assert check_resumable(tmp_path, identity, "t")["sweep_run_id"] == "abc"
    changed = config_for("random", space={"embed_dim": {"min": 8, "max": 64, "step": 8}})
    with pytest.raises(ConfigError, match=r"different search space.*Pass restart=True"):  # the API's keyword
        check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")
    with pytest.raises(ConfigError, match=r"different data.*fp1 -> fp2.*restart=True"):
        check_resumable(tmp_path, sweep_identity(config, "fp2"), "t")
    # the budget (trials or time) and the promote flag may change between runs of the same sweep
    assert check_resumable(tmp_path, sweep_identity(config_for("random", promote=True, max_trials=9, max_time="2h"), "fp1"), "t")


def test_the_refusal_names_each_changed_setting_with_old_and_new_values(tmp_path):
    write_state(tmp_path, sweep_identity(config_for("random"), "fp1") | {"sweep_run_id": "abc"})
    changed = parse_config({"name": "t", "defaults": {"epochs": 6, "dropout": 0.3, "embed_dim": 8, "lstm_out": 4},
                            "search": {"algorithm": "bayesian", "max_trials": 5,
                                       "space": {"embed_dim": {"min": 8, "max": 64, "step": 8}, "lstm_out": {"values": [4, 8]}}}})
    with pytest.raises(ConfigError) as refused:
        check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")
    message = str(refused.value)
    # integer hyperparameters as integers (validation keeps them as floats: 8.0)
    assert 'search.space.embed_dim: {"min": 8, "max": 32, "step": 8} -> {"min": 8, "max": 64, "step": 8}' in message
    assert 'search.space.batch_size: {"values": [32, 64]} -> not searched' in message
    assert 'search.space.lstm_out: not searched -> {"values": [4, 8]}' in message
    assert 'search.algorithm: "random" (default) -> "bayesian"' in message
    assert "defaults.epochs: 4 -> 6" in message and "defaults.dropout: 0.2 (default) -> 0.3" in message
    assert "defaults.lstm_out: 196 (default) -> 4" in message
    assert "restart=True" in message and "--restart" not in message  # from Python: the keyword argument
    cli_style = OPTION_STYLE.set("cli")
    try:
        with pytest.raises(ConfigError, match="Pass --restart to start"):  # from the CLI: the flag
            check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")
    finally:
        OPTION_STYLE.reset(cli_style)


def test_a_refusal_after_a_data_change_names_the_data_setting(tmp_path):
    config = parse_config({"name": "t", "data": {"limit": 300}})
    write_state(tmp_path, sweep_identity(config, "fp1") | {"sweep_run_id": "abc"})
    changed = parse_config({"name": "t", "data": {"limit": 400, "cleaning": "none"}})
    with pytest.raises(ConfigError) as refused:
        check_resumable(tmp_path, sweep_identity(changed, "fp2"), "t")
    assert 'different data (data.cleaning: "unicode" (default) -> "none"; data.limit: 300 -> 400; fingerprint fp1 -> fp2)' \
        in str(refused.value)
    with pytest.raises(ConfigError, match=r"the same data settings, but the rows changed: fingerprint fp1 -> fp3"):
        check_resumable(tmp_path, sweep_identity(config, "fp3"), "t")  # the file's rows changed, not the sweep file
    assert check_resumable(tmp_path, sweep_identity(config, "fp1"), "t")["sweep_run_id"] == "abc"


def test_a_state_file_from_before_settings_were_kept_still_resumes_and_refuses(tmp_path):
    identity = sweep_identity(config_for("random"), "fp1")
    legacy = {"search_digest": identity["search_digest"], "data_fingerprint": "fp1", "sweep_run_id": "abc"}
    write_state(tmp_path, legacy)
    assert check_resumable(tmp_path, identity, "t")["sweep_run_id"] == "abc"  # the same digest as before
    changed = config_for("random", space={"embed_dim": {"values": [8]}})
    with pytest.raises(ConfigError, match=r"different search space or defaults; resuming"):
        check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "hyperband", "grid"])
def test_every_sweep_s_first_trial_is_the_defaults_then_the_search_goes_on(tmp_path, algorithm):
    config = parse_config({
        "name": "t", "defaults": {"epochs": 2, "embed_dim": 24, "batch_size": 64, "dropout": 0.3},
        "search": {"algorithm": algorithm, "max_trials": 4, "space": {
            "embed_dim": {"min": 8, "max": 32, "step": 8}, "batch_size": {"values": [32, 64, 128]},
            "dropout": {"min": 0.0, "max": 0.5, "step": 0.1}}},
    })
    oracle = build_tuner(config, tmp_path / "t").oracle
    first = oracle.create_trial("tuner0")
    searched = {k: v for k, v in first.hyperparameters.values.items() if not k.startswith("tuner/")}
    assert searched == {"embed_dim": 24, "batch_size": 64, "dropout": pytest.approx(0.3)}
    first.status = "COMPLETED"
    oracle.update_trial(first.trial_id, {"val_accuracy": 0.5})
    oracle.end_trial(first)
    second = oracle.create_trial("tuner0")
    assert second.status == "RUNNING"
    assert {k: v for k, v in second.hyperparameters.values.items() if not k.startswith("tuner/")} != searched


def test_a_default_outside_its_searched_values_is_added_and_said(tmp_path):
    config = parse_config({
        "name": "t", "defaults": {"embed_dim": 100, "max_features": 3000, "dropout": 0.7},
        "search": {"space": {"embed_dim": {"min": 32, "max": 128, "step": 32}, "max_features": {"values": [1000, 2000]},
                             "dropout": {"min": 0.1, "max": 0.5}}},
    })
    assert config.widened_space == {"embed_dim": 100, "max_features": 3000, "dropout": 0.7}
    assert config.search.space["embed_dim"].values == [32, 64, 96, 100, 128]
    assert config.search.space["max_features"].values == [1000, 2000, 3000]
    assert (config.search.space["dropout"].min, config.search.space["dropout"].max) == (0.1, 0.7)
    first = build_tuner(config, tmp_path / "t").oracle.create_trial("tuner0")
    assert first.hyperparameters.values == {"embed_dim": 100, "max_features": 3000, "dropout": pytest.approx(0.7)}
    from textsweep import cli

    path = tmp_path / "wide.yaml"
    path.write_text("name: wide\ndefaults: {embed_dim: 100}\nsearch:\n  space:\n    embed_dim: {min: 32, max: 128, step: 32}\n")
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        assert cli.main(["sweeps", "show", str(path)]) == 0
    assert "# search.space.embed_dim was widened to hold its default 100" in out.getvalue()
