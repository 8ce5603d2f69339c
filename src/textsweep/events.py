"""The trial events a search emits and its observers receive: the seam between search/ and tracking/.

KerasTuner runs each trial as `on_trial_begin -> run_trial (on_epoch_end per epoch) ->
on_trial_end`; textsweep's tuner (search/tuner.py) turns those hooks into the events below and
hands each to every observer, in order. MLflow tracking is one observer
(tracking/observer.py), the progress bar another (search/progress.py); the public API composes
them, as Optuna's `study.optimize(callbacks=[MLflowCallback()])` does. The events live here,
below both sides, so that the search never names MLflow and tracking never imports the search.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from textsweep.config import TrainingParams


@dataclass(frozen=True)
class SearchStart:
    objective: str  # the metric the search optimises, e.g. val_accuracy
    trial_budget: int | None  # trials the search may run (a grid smaller than max_trials ends first)
    trials_done: int  # finished before this process started (a resumed sweep)
    epochs: int  # per trial (Hyperband gives each trial its own: `TrialStart.epochs`)
    deadline: float | None  # search.max_time as a `time.time()` value


@dataclass(frozen=True)
class TrialStart:
    trial_id: str  # KerasTuner's, from 0 in creation order, in one process or across workers
    tuner_id: str  # `tuner0` ... for a worker; KerasTuner's default id in one process
    values: dict[str, Any]  # the hyperparameters as KerasTuner chose them (Hyperband's `tuner/*` included)
    params: TrainingParams  # every training param: the searched values over the sweep file's defaults
    best: tuple[str, float] | None = None  # (trial id, score) of the best finished trial so far

    @property
    def epochs(self) -> int:
        return self.values.get("tuner/epochs", self.params.epochs)

    @property
    def first_epoch(self) -> int:
        return self.values.get("tuner/initial_epoch", 0)  # Hyperband continues a trial's training


@dataclass(frozen=True)
class EpochEnd:
    trial: TrialStart
    epoch: int  # from 0
    logs: dict[str, float]
    best: tuple[str, float] | None = None
    out_of_time: bool = False  # search.max_time has passed: the trial stops after this epoch


@dataclass(frozen=True)
class TrialEnd:
    """Sent before KerasTuner records the trial: a process that dies in between runs it again on resume."""

    trial: TrialStart
    status: str  # COMPLETED, FAILED (KerasTuner's TrialStatus)
    message: str | None  # why it failed: KerasTuner's traceback, its last line the reason
    score: float | None  # the best value of the objective over its epochs
    model: Any = field(default=None, repr=False)  # COMPLETED: the Keras model, at its best epoch's weights
    best: tuple[str, float] | None = None  # the best finished trial, this one included

    @property
    def reason(self) -> str:
        """The failure in one line."""
        lines = (self.message or self.status).strip().splitlines()
        return lines[-1] if lines else self.status


@dataclass(frozen=True)
class WorkerLost:
    """The chief gave up on a worker (its process died, or it went silent): its trial goes to another."""

    tuner_id: str
    trial_id: str | None  # the trial it was running, handed to the next worker that asks
    reason: str


@dataclass(frozen=True)
class SearchEnd:
    stopped_by_time: bool  # search.max_time ended the search (a trial cut short, or none started)
    completed: bool  # False: an error or Ctrl-C ended it


# ---------------------------------------------------------------- confirmation (search.confirm)
# After the search, the top trials are trained again with other seeds ("executions"), each one a
# full training of the trial's hyperparameters; the mean over a trial's executions ranks it.


@dataclass(frozen=True)
class ConfirmationStart:
    objective: str
    trial_ids: tuple[str, ...]  # the trials to confirm, best first by best_<objective>
    seeds: int  # executions per trial in all, the original one included
    executions_left: int  # further executions still to run (a resume skips those finished)


@dataclass(frozen=True)
class ExecutionStart:
    trial: TrialStart  # the trial it repeats; `trial.params` carry the execution's seed
    seed: int  # the trial's seed + 1, + 2, ...

    @property
    def trial_id(self) -> str:
        return self.trial.trial_id


@dataclass(frozen=True)
class ExecutionEpochEnd:
    execution: ExecutionStart
    epoch: int  # from 0
    logs: dict[str, float]
    out_of_time: bool = False  # search.max_time has passed: the execution stops after this epoch


@dataclass(frozen=True)
class ExecutionEnd:
    execution: ExecutionStart
    # COMPLETED (counted in the trial's mean), FAILED, or STOPPED: cut by search.max_time or
    # interrupted; not counted (fewer epochs than the trial's), and run again on resume.
    status: str
    score: float | None  # COMPLETED: the best value of the objective over its epochs
    message: str | None = None  # why it failed or stopped


@dataclass(frozen=True)
class TrialConfirmed:
    """A trial's executions so far, the original first: what ranks it."""

    trial_id: str
    seeds: tuple[int, ...]
    scores: tuple[float, ...]  # best_<objective> of each execution, in `seeds` order

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def std(self) -> float:
        # The sample standard deviation (n - 1): the spread one more seed would show, not that of
        # these few seeds alone; 0.0 for a single execution.
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0


@dataclass(frozen=True)
class ConfirmationEnd:
    confirmed: tuple[TrialConfirmed, ...]
    executions_done: int  # further executions finished, in this process and before it
    executions_planned: int
    stopped_by_time: bool  # search.max_time ended (or skipped) it: the means are over what was done


class TrialObserver:
    """What the search calls on each observer; every method does nothing here, so an observer
    (tracking.MlflowTrialObserver, search.ProgressBar) defines only the events it needs."""

    def search_begins(self, event: SearchStart) -> None: ...

    def trial_begins(self, trial: TrialStart) -> None: ...

    def epoch_ends(self, event: EpochEnd) -> None: ...

    def trial_ends(self, event: TrialEnd) -> None: ...

    def worker_lost(self, event: WorkerLost) -> None: ...

    def search_ends(self, event: SearchEnd) -> None: ...

    def confirmation_begins(self, event: ConfirmationStart) -> None: ...

    def execution_begins(self, execution: ExecutionStart) -> None: ...

    def execution_epoch_ends(self, event: ExecutionEpochEnd) -> None: ...

    def execution_ends(self, event: ExecutionEnd) -> None: ...

    def trial_confirmed(self, event: TrialConfirmed) -> None: ...

    def confirmation_ends(self, event: ConfirmationEnd) -> None: ...
