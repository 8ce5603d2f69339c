"""The tuner: KerasTuner's own tuners per `search.algorithm`, their state on disk, and progress.

The search (oracle) and the trial loop are KerasTuner's; textsweep only plugs into its seams:
the `HyperModel` (model.py), the oracle textsweep hands the tuner (a wall-clock budget, and a
grid that survives a resume), the tuner's `on_trial_*`/`on_epoch_end` hooks (here for progress
and the budget, in tracking.py for MLflow), and the tuner's `directory` for resume.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import keras_tuner as kt
from keras_tuner.src import config as keras_tuner_config
from keras_tuner.src.engine.trial import Trial, TrialStatus
from keras_tuner.src.tuners.gridsearch import LinkedList
from tqdm.auto import tqdm

from textsweep.config import DataConfig, SearchConfig, SweepConfig, TrainingParams, space_entry_as_written
from textsweep.errors import ConfigError, option
from textsweep.model import LstmHyperModel

STATE_FILE = "textsweep_state.json"

# KerasTuner prints the traceback of every failed trial by default; textsweep records it in the
# trial's MLflow run (failure.txt) and shows one line in the progress instead.
keras_tuner_config.DEBUG = False


# ---------------------------------------------------------------- the oracles


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


class SweepTuner:
    """Sits between textsweep's mixins and KerasTuner's tuner class in the MRO: the tuner runs on
    textsweep's oracle (KerasTuner's `Tuner(oracle, hypermodel)` seam, which the algorithm's tuner
    class would otherwise fill with its own), and stops the running trial at the deadline."""

    def __init__(self, *, oracle: kt.Oracle, hypermodel: kt.HyperModel, deadline: float | None = None, **kwargs: Any):
        self.seed = oracle.seed  # what the algorithm's own __init__ would have set
        self.deadline = deadline
        self.trial_cut_by_time = False
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)

    def on_epoch_end(self, trial: Trial, model: Any, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(trial, model, epoch, logs=logs)
        if self.deadline is not None and time.time() >= self.deadline:
            # Keras ends fit() after this epoch; KerasTuner has checkpointed the best epoch so far,
            # so the trial ends COMPLETED with it.
            model.stop_training = True
            self.trial_cut_by_time = True

    @property
    def stopped_by_time(self) -> bool:
        """Whether the wall-clock budget ended the search (a trial cut short or none started)."""
        # A worker's oracle is KerasTuner's gRPC client, which has no such attribute.
        return self.trial_cut_by_time or bool(getattr(self.oracle, "stopped_by_time", False))


ALGORITHMS: dict[str, tuple[type[kt.Tuner], type[kt.Oracle]]] = {
    "random": (kt.RandomSearch, RandomSearchOracle),
    "bayesian": (kt.BayesianOptimization, BayesianOptimizationOracle),
    "hyperband": (kt.Hyperband, HyperbandOracle),  # its tuner class adds the brackets' epochs and weights
    "grid": (kt.GridSearch, GridSearchOracle),
}


def objective(config: SweepConfig) -> kt.Objective:
    direction = "min" if config.search.objective.endswith("loss") else "max"
    return kt.Objective(config.search.objective, direction=direction)


def oracle_arguments(config: SweepConfig) -> dict[str, Any]:
    """Constructor arguments of the algorithm's KerasTuner oracle, from the sweep file."""
    search = config.search
    common = {
        "objective": objective(config),
        "seed": config.data.seed,
        "max_consecutive_failed_trials": search.max_consecutive_failures,
        # A trial whose worker died is handed out once more (failed trials are not retried:
        # they end FAILED, not INVALID).
        "max_retries_per_trial": 1,
    }
    if search.algorithm == "hyperband":
        # Hyperband sizes its brackets from max_epochs and factor; max_trials caps them below.
        return common | {"max_epochs": config.defaults.epochs, "factor": search.hyperband_factor}
    return common | {"max_trials": search.max_trials}


def build_tuner(
    config: SweepConfig,
    directory: Path,
    *,
    mixins: tuple[type, ...] = (),
    overwrite: bool = False,
    deadline: float | None = None,
    num_classes: int = 2,
    vocabulary_sizes: dict[str, int] | None = None,
    **mixin_kwargs: Any,
) -> kt.Tuner:
    """The algorithm's KerasTuner tuner over the seeds' hypermodel, with textsweep's hooks mixed in.

    `num_classes` sizes the model's output; `vocabulary_sizes` (per tokenizer kind) cap each trial's max_features.

    `deadline` (a `time.time()` value, or None) is the wall-clock budget: no trial starts after
    it, and the running trial stops at the end of its current epoch (`tuner.stopped_by_time`).
    """
    base, oracle_class = ALGORITHMS[config.search.algorithm]
    oracle = oracle_class(**oracle_arguments(config))
    oracle.deadline = deadline
    if config.search.algorithm == "hyperband":
        oracle.max_trials = config.search.max_trials
    tuner_class = type(f"Sweep{base.__name__}", (*mixins, SweepTuner, base), {})
    return tuner_class(
        oracle=oracle,
        hypermodel=LstmHyperModel(config.defaults, config.search.space, num_classes, vocabulary_sizes),
        directory=str(directory.parent),
        project_name=directory.name,
        overwrite=overwrite,
        deadline=deadline,
        **mixin_kwargs,
    )


def fit_arguments(config: SweepConfig) -> dict[str, Any]:
    """What `tuner.search` passes on to `HyperModel.fit`, beside the data."""
    import keras

    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    if config.search.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=config.search.objective, patience=config.search.patience, restore_best_weights=False
            )
        )
    return {"epochs": config.defaults.epochs, "callbacks": callbacks, "verbose": 0}


# ---------------------------------------------------------------- resume state

# May change between runs of the same sweep: the budget (extend a sweep, in trials or time),
# what happens at its end, and when it gives up.
RESUMABLE_CHANGES = {"promote", "max_consecutive_failures", "max_trials", "max_time", "worker_timeout", "reference"}


def _searched(config: SweepConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    # Only values that differ from textsweep's defaults: a new setting added later, at its
    # default, must not make every earlier sweep unresumable.
    search = config.search.model_dump(mode="json", exclude=RESUMABLE_CHANGES, exclude_defaults=True)
    return search, config.defaults.model_dump(mode="json", exclude_defaults=True)


def sweep_identity(config: SweepConfig, data_fingerprint: str) -> dict[str, Any]:
    """What must not change between a sweep and its resume: the search and the data.

    `settings` (each searched setting by its sweep-file key) and `data_settings` (the `data`
    section) go into the state file too, so that a refusal can name what changed.
    """
    search, defaults = _searched(config)
    # The digest textsweep has always written, so sweeps started before `settings` still resume.
    digest = hashlib.sha256(json.dumps([search, defaults], sort_keys=True).encode()).hexdigest()[:16]
    space = search.pop("space", {})
    settings = (
        {f"search.{key}": value for key, value in search.items()}
        | {f"search.space.{key}": value for key, value in space.items()}
        | {f"defaults.{key}": value for key, value in defaults.items()}
    )
    data_settings = {f"data.{key}": value for key, value in config.data.model_dump(mode="json", exclude_defaults=True).items()}
    return {"search_digest": digest, "data_fingerprint": data_fingerprint, "settings": settings, "data_settings": data_settings}


def space_entry_text(name: str, entry: dict[str, Any]) -> str:
    """A `search.space` entry as JSON, as the sweep file writes it (`{"values": [8, 16]}`)."""
    return json.dumps(space_entry_as_written(name, entry))


def _setting_text(key: str, settings: dict[str, Any]) -> str:
    section, _, name = key.partition(".")
    if key in settings:
        value = settings[key]
        if name.startswith("space.") and isinstance(value, dict):
            return space_entry_text(name.removeprefix("space."), value)
        return json.dumps(value)
    if name.startswith("space."):
        return "not searched"
    fields = {"search": SearchConfig, "defaults": TrainingParams, "data": DataConfig}[section].model_fields
    return f"{json.dumps(fields[name].default)} (default)" if name in fields else "default"


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`key: old -> new` for each setting that differs between two `settings` of `sweep_identity`."""
    missing = object()
    keys = sorted(k for k in saved.keys() | current.keys() if saved.get(k, missing) != current.get(k, missing))
    return [f"{key}: {_setting_text(key, saved)} -> {_setting_text(key, current)}" for key in keys]


def read_state(directory: Path) -> dict[str, Any] | None:
    path = directory / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_state(directory: Path, state: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))


def check_resumable(directory: Path, identity: dict[str, Any], config_name: str) -> dict[str, Any] | None:
    """The saved state of an earlier run of this sweep, or None; refuse a changed sweep, naming what changed."""
    state = read_state(directory)
    if state is None:
        return None
    changed = []
    if state.get("search_digest") != identity["search_digest"]:
        # State files written before textsweep kept the settings cannot say which one changed.
        changes = changed_settings(state["settings"], identity["settings"]) if "settings" in state else []
        changed.append("search space or defaults" + (f" ({'; '.join(changes)})" if changes else ""))
    if state.get("data_fingerprint") != identity["data_fingerprint"]:
        fingerprints = f"fingerprint {state.get('data_fingerprint')} -> {identity['data_fingerprint']}"
        if "data_settings" not in state:  # written before textsweep kept them
            changed.append(f"data ({fingerprints})")
        elif changes := changed_settings(state["data_settings"], identity["data_settings"]):
            changed.append(f"data ({'; '.join(changes)}; {fingerprints})")
        else:
            changed.append(f"data (the same data settings, but the rows changed: {fingerprints})")
    if not changed:
        return state
    raise ConfigError(
        f"sweep {config_name!r} already has state in {directory} with a different {' and '.join(changed)}; "
        f"resuming would mix two searches. Pass {option('restart', True)} to start this sweep over, "
        "or give the changed sweep a new `name`."
    )


def discard_state(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)


# ---------------------------------------------------------------- progress


class ProgressReporting:
    """Tuner mixin: one tqdm bar over the trial budget, and one line per finished trial.

    `tqdm.auto` draws a widget in Jupyter and a bar on a terminal. `disable=None` is tqdm's own
    rule for anything else (a pipe, a CI log, a worker relayed by the chief): no bar, because a
    bar there is a carriage-return rewrite per refresh, which logs show as a flood. The line per
    finished trial (its params, score, time, best so far, ETA) is printed in every case, above
    the bar where there is one. `quiet` shows neither.
    """

    def __init__(self, *args: Any, quiet: bool = False, stream: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._quiet = quiet
        self._stream = stream or sys.stdout
        self._bar: Any = None
        self._trial_durations: list[float] = []

    def _trial_budget(self) -> int | None:
        budget = self.oracle.max_trials
        if isinstance(self.oracle, GridSearchOracle):  # a grid smaller than the budget ends first
            budget = min(budget or sys.maxsize, self.oracle.grid_size())
        return budget

    def _best_so_far(self, named: bool = True) -> str:
        best = self.oracle.get_best_trials(1)
        if not best or best[0].score is None:
            return "best -"
        name = f"{self.oracle.objective.name} " if named else ""
        return f"best {name}{best[0].score:.4f} [{best[0].trial_id}]"

    def _say(self, line: str) -> None:
        if self._quiet:
            return
        tqdm.write(line, file=self._stream)  # above the bar, which is redrawn below it
        self._stream.flush()

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        self._epochs_per_trial = fit_kwargs.get("epochs", 1)
        budget = self._trial_budget()
        # After a resume the bar starts at the trials already done (a worker's oracle is a gRPC
        # client that cannot say: it starts at 0).
        done = len(getattr(self.oracle, "end_order", ()))
        terminal = shutil.get_terminal_size()
        self._bar = tqdm(
            total=budget, initial=min(done, budget or done), file=self._stream, disable=True if self._quiet else None,
            # shutil's size, not tqdm's own probe: a terminal that reports 0x0 (a bare pty in CI or
            # a container) gets 80x24, where tqdm would draw nothing at all.
            ncols=terminal.columns, nrows=terminal.lines, unit="trial", smoothing=0.3,
            bar_format="{desc} {percentage:3.0f}%|{bar:16}| [{elapsed}<{remaining}]{postfix}",
        )
        try:
            super().search(*fit_args, **fit_kwargs)
        finally:
            self._bar.close()

    def on_trial_begin(self, trial: Trial) -> None:
        super().on_trial_begin(trial)
        self._trial_started = time.monotonic()
        self._trial_progress = 0.0  # of this trial, in trials (one per epoch when it ends)
        values = trial.hyperparameters.values
        self._trial_params = " ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items() if not k.startswith("tuner/")
        )
        # KerasTuner numbers trials from 0 in creation order, in one process or across workers.
        self._trial_label = f"trial {int(trial.trial_id) + 1}/{self._trial_budget() or '?'}"
        self._bar.set_description_str(self._trial_label, refresh=False)
        self._bar.set_postfix_str(f"starting | {self._best_so_far(named=False)} | {self._trial_params}")

    def on_epoch_end(self, trial: Trial, model: Any, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(trial, model, epoch, logs=logs)
        values = trial.hyperparameters.values
        epochs = values.get("tuner/epochs", self._epochs_per_trial)
        first = values.get("tuner/initial_epoch", 0)  # Hyperband continues a trial's training
        progress = (epoch + 1 - first) / max(epochs - first, 1)
        value = (logs or {}).get(self.oracle.objective.name)
        shown = f" {self.oracle.objective.name} {value:.4f}" if value is not None else ""
        deadline = getattr(self, "deadline", None)
        stopping = " | time budget reached, stopping" if deadline is not None and time.time() >= deadline else ""
        self._bar.set_postfix_str(
            f"epoch {epoch + 1}/{epochs}{shown} | {self._best_so_far(named=False)}{stopping} | {self._trial_params}",
            refresh=False,
        )
        self._bar.update(progress - self._trial_progress)
        self._trial_progress = progress

    def on_trial_end(self, trial: Trial) -> None:
        super().on_trial_end(trial)
        elapsed = time.monotonic() - self._trial_started
        self._trial_durations.append(elapsed)
        score = self.oracle.get_trial(trial.trial_id).score
        if trial.status == "COMPLETED" and score is not None:
            outcome = f"{self.oracle.objective.name} {score:.4f}"
        else:
            reason = (trial.message or "").strip().splitlines()
            outcome = f"{trial.status}: {reason[-1] if reason else '?'}"[:200]
        self._bar.update(1 - self._trial_progress)
        self._say(
            f"{self._trial_label} {self._trial_params} | done {outcome} in {tqdm.format_interval(elapsed)} | "
            f"{self._best_so_far()}{self._eta(trial)}"
        )

    def _eta(self, trial: Trial) -> str:
        # Trial ids count every trial of the sweep, so this holds after a resume and across workers.
        budget = self._trial_budget()
        if not budget:
            return ""
        remaining = max(budget - int(trial.trial_id) - 1, 0)
        if not remaining:
            return ""
        eta = sum(self._trial_durations) / len(self._trial_durations) * remaining
        deadline = getattr(self, "deadline", None)
        if deadline is not None:  # the wall-clock budget may end the sweep first
            eta = max(min(eta, deadline - time.time()), 0)
        return f" | ETA {tqdm.format_interval(eta)}"
