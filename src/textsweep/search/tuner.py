"""The tuner: KerasTuner's trial loop on textsweep's oracle, handing every trial event to observers.

KerasTuner calls `on_trial_begin -> run_trial (on_epoch_end per epoch) -> on_trial_end`;
`SweepTuner` turns each hook into an event (textsweep.events) for its observers, stops the
running trial at the wall-clock deadline, raises Ctrl-C and SIGTERM only at safe points
(textsweep.interrupts), and otherwise leaves the loop to KerasTuner.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras_tuner as kt

# No public setting: KerasTuner prints the traceback of every failed trial unless its DEBUG flag
# is off; textsweep records it in the trial's run (failure.txt) and shows one line instead.
from keras_tuner.src import config as keras_tuner_config

from textsweep import interrupts
from textsweep.config import SweepConfig
from textsweep.errors import SweepError
from textsweep.events import EpochEnd, SearchEnd, SearchStart, TrialEnd, TrialStart
from textsweep.model import LstmHyperModel
from textsweep.search.distributed import WorkerHeartbeat, distributed_role
from textsweep.search.oracles import build_oracle, trial_budget

keras_tuner_config.DEBUG = False


class SweepTuner(kt.Tuner):
    """KerasTuner's tuner on textsweep's oracle (KerasTuner's `Tuner(oracle, hypermodel)` seam),
    emitting trial events to `observers` and stopping the running trial at `deadline`."""

    def __init__(self, *, oracle: kt.Oracle, hypermodel: kt.HyperModel, observers: Sequence[Any] = (),
                 deadline: float | None = None, **kwargs: Any):
        self.seed = oracle.seed  # what an algorithm's own __init__ (Hyperband's) would have set
        self.observers = list(observers)
        self.deadline = deadline
        self.trial_cut_by_time = False
        self._started: dict[str, TrialStart] = {}
        self._trained: dict[str, Any] = {}  # trial id -> its Keras model, for its end
        self._best_seen: dict[str, tuple[str, float] | None] = {}  # trial id -> the best when it last reported
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)

    def emit(self, event_name: str, event: Any) -> None:
        for observer in self.observers:
            getattr(observer, event_name)(event)

    @property
    def stopped_by_time(self) -> bool:
        """Whether the wall-clock budget ended the search (a trial cut short or none started)."""
        # A worker's oracle is KerasTuner's gRPC client, which has no such attribute.
        return self.trial_cut_by_time or bool(getattr(self.oracle, "stopped_by_time", False))

    def best_so_far(self) -> tuple[str, float] | None:
        """(trial id, score) of the best finished trial, asked of the oracle (a worker's is the chief's)."""
        best = self.oracle.get_best_trials(1)
        return (best[0].trial_id, best[0].score) if best and best[0].score is not None else None

    def better(self, a: tuple[str, float] | None, b: tuple[str, float] | None) -> tuple[str, float] | None:
        if a is None or b is None:
            return a or b
        lower_is_better = self.oracle.objective.direction == "min"
        return b if (b[1] < a[1] if lower_is_better else b[1] > a[1]) else a

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        self.emit("search_begins", SearchStart(
            objective=self.oracle.objective.name, trial_budget=trial_budget(self.oracle),
            # After a resume: the trials already done (a worker's gRPC oracle cannot say: 0).
            trials_done=len(getattr(self.oracle, "end_order", ())),
            epochs=fit_kwargs.get("epochs", 1), deadline=self.deadline,
        ))
        completed = False
        try:
            # Ctrl-C and SIGTERM stop the search at a trial's start or end or before a batch, never
            # inside TensorFlow or an MLflow write (textsweep.interrupts).
            with interrupts.deferred():
                super().search(*fit_args, **fit_kwargs)
            completed = True
        finally:
            self.emit("search_ends", SearchEnd(stopped_by_time=self.stopped_by_time, completed=completed))

    def pre_create_trial(self) -> None:
        # A safe point: no trial starts after Ctrl-C (also while a worker asks an oracle still busy).
        interrupts.raise_if_pending()
        super().pre_create_trial()

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)
        # A trial runs again when its worker died or went silent. A silent worker (stopped, hung)
        # may hold HDF5's lock on the checkpoint it was writing, and this trial's first checkpoint
        # would fail with "unable to lock file"; a new file in the old one's place is not locked.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._get_checkpoint_fname(trial.trial_id))
        start = TrialStart(trial.trial_id, self.tuner_id, dict(trial.hyperparameters.values),
                           self.hypermodel.params(trial.hyperparameters), best=self.best_so_far())
        self._started[trial.trial_id] = start
        self._best_seen[trial.trial_id] = start.best
        self.emit("trial_begins", start)

    def on_epoch_end(self, trial: kt.engine.trial.Trial, model: Any, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(trial, model, epoch, logs=logs)
        self._trained[trial.trial_id] = model
        logs = {name: float(value) for name, value in (logs or {}).items()}
        out_of_time = self.deadline is not None and time.time() >= self.deadline
        self._best_seen[trial.trial_id] = best = self.best_so_far()
        self.emit("epoch_ends", EpochEnd(self._started[trial.trial_id], epoch, logs, best, out_of_time))
        if self.deadline is not None and time.time() >= self.deadline:
            # Keras ends fit() after this epoch; KerasTuner has checkpointed the best epoch so far,
            # so the trial ends COMPLETED with it.
            model.stop_training = True
            self.trial_cut_by_time = True

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        start = self._started.pop(trial.trial_id)
        model = self._trained.pop(trial.trial_id, None)
        completed = trial.status == kt.engine.trial.TrialStatus.COMPLETED
        # A trial that failed before its first epoch has no objective metric at all to ask for.
        objective = self.oracle.objective.name
        score = self.oracle.get_trial(trial.trial_id).metrics.get_best_value(objective) if completed else None
        if completed and model is not None:
            # The best epoch's weights (KerasTuner's checkpoint; no public name for its file),
            # loaded into the trained model rather than through `Tuner.load_model`, which rebuilds it.
            model.load_weights(self._get_checkpoint_fname(trial.trial_id))
        # Not the oracle's answer now: it holds this trial COMPLETED but not yet scored, which its
        # ranking cannot sort. The best seen at the last epoch, or this trial if it is better.
        best = self.better(self._best_seen.pop(trial.trial_id, None), (trial.trial_id, score) if score is not None else None)
        # Before KerasTuner records the trial (super): a process that dies between the two runs
        # the trial again on resume, and tracking supersedes the run it had finished.
        self.emit("trial_ends", TrialEnd(start, trial.status, trial.message, score, model if completed else None, best))
        super().on_trial_end(trial)
        interrupts.raise_if_pending()  # a safe point: Ctrl-C during the trial's last steps keeps it


class SweepHyperband(SweepTuner, kt.Hyperband):
    """KerasTuner's Hyperband tuner (its `run_trial` trains each bracket's epochs, continuing from
    the trial it extends) on textsweep's oracle; `SweepTuner.__init__` skips Hyperband's, which
    would build its own oracle."""


def build_tuner(
    config: SweepConfig, directory: Path, *, num_classes: int = 2, vocabulary_sizes: dict[str, int] | None = None,
    observers: Sequence[Any] = (), deadline: float | None = None, overwrite: bool = False,
) -> SweepTuner:
    """The sweep's tuner over the seeds' hypermodel, its state in `directory` (which resumes it).

    `num_classes` sizes the model's output; `vocabulary_sizes` (per tokenizer kind) cap each
    trial's max_features. `deadline` (a `time.time()` value, or None) is the wall-clock budget:
    no trial starts after it, and the running trial stops at the end of its current epoch.
    """
    tuner_class = SweepHyperband if config.search.algorithm == "hyperband" else SweepTuner
    return tuner_class(
        oracle=build_oracle(config, deadline),
        hypermodel=LstmHyperModel(config.defaults, config.search.space, num_classes, vocabulary_sizes),
        observers=observers, deadline=deadline,
        directory=str(directory.parent), project_name=directory.name, overwrite=overwrite,
    )


def fit_arguments(config: SweepConfig, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """What `tuner.search` passes on to `HyperModel.fit`, beside the data; `callbacks` are the user's."""
    import keras

    fit_callbacks: list[Any] = [keras.callbacks.TerminateOnNaN()]
    if config.search.patience:
        fit_callbacks.append(keras.callbacks.EarlyStopping(
            monitor=config.search.objective, patience=config.search.patience, restore_best_weights=False
        ))
    return {"epochs": config.defaults.epochs, "callbacks": [*fit_callbacks, *callbacks], "verbose": 0}


def run_search(
    config: SweepConfig, directory: Path, encoded: Any, observers: Sequence[Any], *,
    deadline: float | None = None, callbacks: Sequence[Any] = (), overwrite: bool = False,
) -> SweepTuner:
    """KerasTuner's search loop in this process over the encoded splits, every event to `observers`
    (in one process, or as a worker of a chief's oracle)."""
    tuner = build_tuner(config, directory, num_classes=len(encoded.classes), vocabulary_sizes=encoded.vocabulary_sizes(),
                        observers=observers, deadline=deadline, overwrite=overwrite)
    if distributed_role() == "worker":  # its oracle is now KerasTuner's gRPC client of the chief's
        tuner.observers.insert(0, WorkerHeartbeat(tuner.oracle))
    with consecutive_failures_as_sweep_error(config):
        tuner.search(encoded, **fit_arguments(config, callbacks))
    return tuner


@contextlib.contextmanager
def long_lived_objects_frozen() -> Iterator[None]:
    """Keep the objects alive before the search out of Python's full garbage collections while it runs.

    KerasTuner starts every trial with `keras.backend.clear_session()` and `gc.collect()`, and
    clear_session collects too: three full collections a trial, each walking every object that
    TensorFlow, Keras, MLflow and pandas hold (~650,000 in a `textsweep` process). Measured in a
    3-trial CLI sweep of tiny models: 4.4 s of its 23 s (BENCHMARKS.md, section 11). `gc.freeze`
    moves the objects alive now where no collection walks; what the trials build is still
    collected. Unfrozen after, so that objects of a notebook freed during the search are
    collected as usual; left alone if the caller froze objects itself.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def consecutive_failures_as_sweep_error(config: SweepConfig) -> Iterator[None]:
    """KerasTuner ends a search after too many failed trials in a row with a RuntimeError."""
    try:
        yield
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        last = str(exc).strip().splitlines()[-1]
        raise SweepError(
            f"sweep {config.name!r} stopped: {config.search.max_consecutive_failures} trials in a row failed "
            f"(search.max_consecutive_failures). Last failure: {last}. The failed trial runs hold "
            "failure.txt; fix the cause, then rerun the same command to resume."
        ) from None
