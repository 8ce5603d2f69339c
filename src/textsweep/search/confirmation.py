"""Confirmation (search.confirm): after the search, the top trials trained again with other seeds.

The search ranks trials by one training each on a small validation split, whose noise (one
standard error of an accuracy can be ~0.8 points) exceeds the gaps between the top trials. Each of the
top `confirm.top` trials (by best_<objective>) is trained again until it has `confirm.seeds`
executions, its original one included, with seeds `trial seed + 1, + 2, ...`; the mean over them
ranks it (tracking's leaderboard).

KerasTuner's pieces do the work: the oracle's trials and hyperparameters, the hypermodel's
`build(hp)` and `fit(hp, model, data, ...)`, the trial's fit arguments and callbacks. The seed
enters the way a trial's does, as `params.seed` (`keras.utils.set_random_seed` when the model is
built, and the training shuffle). Executions run round by round (every trial's seed + 1, then
every trial's seed + 2), so a time budget that ends confirmation early leaves each trial as
evenly confirmed as it can. A finished execution is recorded in the tuner's directory after the
observers heard of it, so that a resume runs only what is missing; one process runs it: the
sweep's single process or its chief, after the search.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from textsweep.config import SweepConfig
from textsweep.events import (
    ConfirmationEnd, ConfirmationStart, ExecutionEnd, ExecutionEpochEnd, ExecutionStart, TrialConfirmed, TrialStart,
)
from textsweep.model import LstmHyperModel
from textsweep.search.tuner import fit_arguments

RECORD_FILE = "textsweep_confirmation.json"  # {trial id: {seed: best_<objective>}} of finished executions


def confirm_top_trials(
    tuner: kt.Tuner, config: SweepConfig, encoded: Any, observers: Sequence[Any], *, deadline: float | None = None,
    callbacks: Sequence[Any] = (),
) -> ConfirmationEnd | None:
    """Train the top trials of `tuner`'s oracle again with further seeds, with the trials' fit
    arguments (`callbacks` the user's), every event to `observers`; None when the sweep confirms
    nothing (search.confirm off, or no finished trial)."""
    confirm = config.search.confirmation
    if confirm is None:
        return None
    oracle = tuner.oracle
    top = best_trials(oracle, confirm.top)
    if not top:
        return None

    def emit(event_name: str, event: Any) -> None:
        for observer in observers:
            getattr(observer, event_name)(event)

    record_path = Path(tuner.project_dir) / RECORD_FILE
    finished = read_record(record_path)
    starts = {trial.trial_id: TrialStart(trial.trial_id, tuner.tuner_id, dict(trial.hyperparameters.values),
                                         tuner.hypermodel.params(trial.hyperparameters)) for trial in top}
    further_seeds = {trial_id: [start.params.seed + n for n in range(1, confirm.seeds)] for trial_id, start in starts.items()}
    rounds = [(trial_id, seeds[n]) for n in range(confirm.seeds - 1) for trial_id, seeds in further_seeds.items()]
    left = [(trial_id, seed) for trial_id, seed in rounds if str(seed) not in finished.get(trial_id, {})]
    emit("confirmation_begins", ConfirmationStart(oracle.objective.name, tuple(starts), confirm.seeds, len(left)))

    stopped_by_time = False
    for trial_id, seed in left:
        if deadline is not None and time.time() >= deadline:
            stopped_by_time = True
            break
        end = run_execution(tuner, oracle.get_trial(trial_id), starts[trial_id], seed, encoded,
                            fit_arguments(config, callbacks), deadline, emit)
        if end.status == "COMPLETED":
            finished.setdefault(trial_id, {})[str(seed)] = end.score
            write_record(record_path, finished)
        elif end.status == "STOPPED":
            stopped_by_time = True
            break

    confirmed = []
    for trial in top:
        done = [seed for seed in further_seeds[trial.trial_id] if str(seed) in finished.get(trial.trial_id, {})]
        if done:
            confirmed.append(TrialConfirmed(
                trial.trial_id, (starts[trial.trial_id].params.seed, *done),
                (float(trial.score), *(finished[trial.trial_id][str(seed)] for seed in done)),
            ))
            emit("trial_confirmed", confirmed[-1])
    end = ConfirmationEnd(tuple(confirmed), sum(len(t.seeds) - 1 for t in confirmed), len(rounds), stopped_by_time)
    emit("confirmation_ends", end)
    return end


def best_trials(oracle: kt.Oracle, count: int) -> list[kt.engine.trial.Trial]:
    """The `count` best finished trials by best_<objective>, ties to the earlier trial: the same
    choice in every process (the oracle's own ranking leaves ties in the order it loaded its
    trials, which a resume may change)."""
    sign = -1 if oracle.objective.direction == "max" else 1
    finished = [trial for trial in oracle.trials.values()
                if trial.status == kt.engine.trial.TrialStatus.COMPLETED and trial.score is not None]
    return sorted(finished, key=lambda trial: (sign * trial.score, int(trial.trial_id)))[:count]


def run_execution(
    tuner: kt.Tuner, trial: kt.engine.trial.Trial, start: TrialStart, seed: int, encoded: Any,
    fit_arguments: dict[str, Any], deadline: float | None, emit: Any,
) -> ExecutionEnd:
    """One more training of `trial`'s hyperparameters with `seed`, from scratch, as the trial was trained."""
    hp = trial.hyperparameters
    hypermodel = tuner.hypermodel
    # The trial's own hypermodel with the seed in its defaults: `params.seed` seeds the weights
    # and the shuffle (model.build_model, model.fit_model). No hyperparameter carries the seed.
    reseeded = LstmHyperModel(hypermodel.defaults.model_copy(update={"seed": seed}), hypermodel.space,
                              hypermodel.num_classes, hypermodel.vocabulary_sizes)
    execution = ExecutionStart(dataclasses.replace(start, params=reseeded.params(hp)), seed)
    emit("execution_begins", execution)
    reporter = ExecutionReporter(execution, emit, deadline)
    fit = dict(fit_arguments)
    # As KerasTuner does per trial: callbacks keep state (EarlyStopping's wait), each fit gets copies.
    fit["callbacks"] = [*copy.deepcopy(list(fit_arguments.get("callbacks", []))), reporter]
    if "tuner/epochs" in hp.values:  # Hyperband: all the epochs the trial reached, trained from scratch
        fit["epochs"] = hp.values["tuner/epochs"]
    objective = tuner.oracle.objective
    try:
        keras.backend.clear_session()
        model = reseeded.build(hp)
        history = reseeded.fit(hp, model, encoded, **fit)
    except kt.errors.FailedTrialError as exc:
        end = ExecutionEnd(execution, "FAILED", None, str(exc))
    except BaseException:  # Ctrl-C, SIGTERM: the run ends, the execution runs again on resume
        emit("execution_ends", ExecutionEnd(execution, "STOPPED", None, "interrupted"))
        raise
    else:
        values = history.history.get(objective.name, [])
        if reporter.cut_by_time:
            end = ExecutionEnd(execution, "STOPPED", None, f"search.max_time ended it after {len(values)} epochs, "
                                                           "fewer than its trial's: not counted in the trial's mean")
        elif not values:
            end = ExecutionEnd(execution, "FAILED", None, f"no {objective.name} was logged")
        else:
            end = ExecutionEnd(execution, "COMPLETED", float(max(values) if objective.direction == "max" else min(values)))
    emit("execution_ends", end)
    return end


class ExecutionReporter(keras.callbacks.Callback):
    """Hands each epoch of an execution to the observers, and stops it at the sweep's deadline."""

    def __init__(self, execution: ExecutionStart, emit: Any, deadline: float | None):
        super().__init__()
        self.execution, self.emit, self.deadline = execution, emit, deadline
        self.cut_by_time = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        out_of_time = self.deadline is not None and time.time() >= self.deadline
        logs = {name: float(value) for name, value in (logs or {}).items()}
        self.emit("execution_epoch_ends", ExecutionEpochEnd(self.execution, epoch, logs, out_of_time))
        if out_of_time and epoch + 1 < self.params.get("epochs", epoch + 1):
            self.model.stop_training = True
            self.cut_by_time = True


def read_record(path: Path) -> dict[str, dict[str, float]]:
    return json.loads(path.read_text()) if path.exists() else {}


def write_record(path: Path, finished: dict[str, dict[str, float]]) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(finished, indent=1, sort_keys=True))
    partial.replace(path)  # whole or not at all, should the process die while writing


def confirmation_text(end: ConfirmationEnd | None, objective: str) -> str | None:
    """One line for the sweep's summary: what confirmation did, and whether time cut it short."""
    if end is None:
        return None
    trials = len(end.confirmed)
    line = (f"confirmation: {end.executions_done} of {end.executions_planned} further executions; "
            f"{trials} trial{'' if trials == 1 else 's'} ranked by the mean {objective} over their seeds")
    if end.stopped_by_time:
        line += (" (search.max_time ended confirmation early: each mean is over the executions done; rerun the "
                 "same command with a larger search.max_time to finish it)")
    return line
