"""The oracles: KerasTuner's own, per `search.algorithm`, with textsweep's two additions.

KerasTuner's oracle decides which trial runs next and knows nothing of training; textsweep's
mixins add a wall-clock budget (no trial starts after search.max_time) and the sweep file's
`defaults` as the first trial, and rebuild the grid's bookkeeping on resume.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import keras_tuner as kt
from keras_tuner.engine.trial import Trial, TrialStatus

# No public name: the grid's linked list of tried trials, rebuilt on resume
# (keras-team/keras-tuner issue 1055, GridSearchOracle below).
from keras_tuner.src.tuners.gridsearch import LinkedList

from textsweep.config import SweepConfig


class WallClockBudget:
    """Oracle mixin: no trial starts once `deadline` (a `time.time()` value) has passed.

    KerasTuner ends a search when the oracle answers `create_trial` with a STOPPED trial, in one
    process and for every worker of a chief that serves this oracle, so the budget lives here.

    A sweep with no finished trial yet still starts one after the deadline (which the tuner cuts
    after its first epoch): every sweep then ends with a result, and with the time an epoch takes,
    however short its budget (`search.max_time: 1s`) or slow its machine.
    """

    deadline: float | None = None
    stopped_by_time = False

    @kt.synchronized
    def create_trial(self, tuner_id: str) -> Trial:
        budget_spent = self.max_trials and len(self.trials) >= self.max_trials and not self._retry_queue
        if (
            self.deadline is not None
            and time.time() >= self.deadline
            and tuner_id not in self.ongoing_trials  # a worker asking again for the trial it runs
            and not budget_spent  # the budget ended the search, not the clock
            and self._a_result_is_certain()
        ):
            self.stopped_by_time = True
            self.tuner_ids.discard(tuner_id)  # as KerasTuner does for STOPPED: the chief may exit
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        return super().create_trial(tuner_id)

    def _a_result_is_certain(self) -> bool:
        """A trial has finished, or one is running (and will end at its next epoch)."""
        return bool(self.ongoing_trials) or any(t.status == TrialStatus.COMPLETED for t in self.trials.values())


class DefaultsFirst:
    """Oracle mixin: a sweep's first trial is the sweep file's `defaults` (each hyperparameter's
    default), so the leaderboard always holds the seed's own result and the search can only
    improve on it.

    Random search, Bayesian optimisation's initial points and Hyperband's new candidates all draw
    through `_random_values`; KerasTuner's grid search already starts from the defaults.
    """

    def _random_values(self) -> dict[str, Any] | None:
        if self.trials:  # only the very first trial (it is recorded after this call)
            return super()._random_values()
        defaults = kt.HyperParameters()
        for hp in self.hyperparameters.space:
            defaults.merge([hp])
            if defaults.is_active(hp):
                defaults.values[hp.name] = hp.default
        return defaults.values


class RandomSearchOracle(WallClockBudget, DefaultsFirst, kt.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(WallClockBudget, DefaultsFirst, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(WallClockBudget, DefaultsFirst, kt.oracles.HyperbandOracle):
    pass


class GridSearchOracle(WallClockBudget, kt.oracles.GridSearchOracle):
    """KerasTuner's grid, with its bookkeeping rebuilt when a sweep resumes.

    Works around keras-team/keras-tuner issue 1055 (open in 1.4.8): `GridSearchOracle` keeps
    the tried trial ids in grid order (`_ordered_ids`, a linked list) and the ids whose next
    grid point is still to be made (`_populate_next`) only in memory; `get_state` saves neither.
    After a resume both are empty while the reloaded trials are not. The trial the dead process
    left RUNNING is retried, its end queues its id, and the next `populate_space` looks that id
    up in the empty linked list: `KeyError`, the sweep FAILED. The rerun after that finds the
    queue empty with trials on disk, so the grid looks exhausted: STOPPED, with the rest of the
    grid never run. Both are derived from the trials, which are saved, so they are rebuilt here:
    every started trial in grid order, and every one queued to make its next point (a point
    already tried is skipped by KerasTuner's own check against the linked list's next id).
    """

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        in_grid_order = sorted(
            self.start_order,
            key=functools.cmp_to_key(
                lambda a, b: self._compare(self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values)
            ),
        )
        self._ordered_ids = LinkedList()
        for trial_id in in_grid_order:
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(self.start_order)

    def grid_size(self) -> int:
        size = 1
        for hp in self.get_space().space:
            size *= len(list(hp.values))
        return size


ORACLES: dict[str, type[kt.Oracle]] = {
    "random": RandomSearchOracle,
    "bayesian": BayesianOptimizationOracle,
    "hyperband": HyperbandOracle,
    "grid": GridSearchOracle,
}


def objective(config: SweepConfig) -> kt.Objective:
    direction = "min" if config.search.objective.endswith("loss") else "max"
    return kt.Objective(config.search.objective, direction=direction)


def build_oracle(config: SweepConfig, deadline: float | None) -> kt.Oracle:
    """The algorithm's oracle, from the sweep file; `deadline` is search.max_time as a `time.time()` value."""
    search = config.search
    arguments = {
        "objective": objective(config),
        "seed": config.data.seed,
        "max_consecutive_failed_trials": search.max_consecutive_failures,
        # A trial whose worker died is handed out once more (failed trials are not retried:
        # they end FAILED, not INVALID).
        "max_retries_per_trial": 1,
    }
    if search.algorithm == "hyperband":
        # Hyperband sizes its brackets from max_epochs and factor; max_trials caps them below.
        arguments |= {"max_epochs": config.defaults.epochs, "factor": search.hyperband_factor}
    else:
        arguments["max_trials"] = search.max_trials
    oracle = ORACLES[search.algorithm](**arguments)
    oracle.deadline = deadline
    oracle.max_trials = search.max_trials
    return oracle


def trial_budget(oracle: Any) -> int | None:
    """How many trials the search may run: max_trials, or a smaller grid."""
    budget = oracle.max_trials
    if isinstance(oracle, GridSearchOracle):
        budget = min(budget or 2**63, oracle.grid_size())
    return budget
