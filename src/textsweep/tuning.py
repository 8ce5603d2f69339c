"""The tuner: KerasTuner's own tuners per `search.algorithm`, their state on disk, and progress.

The search (oracle) and the trial loop are KerasTuner's; textsweep only plugs into its seams:
the `HyperModel` (model.py), the tuner's `on_trial_*`/`on_epoch_end` hooks (here for progress,
in tracking.py for MLflow), and the tuner's `directory` for resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import keras_tuner as kt
from keras_tuner.src import config as keras_tuner_config

from textsweep.config import SweepConfig
from textsweep.errors import ConfigError
from textsweep.model import LstmHyperModel

TUNER_CLASSES: dict[str, type[kt.Tuner]] = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
    "grid": kt.GridSearch,
}
STATE_FILE = "textsweep_state.json"

# KerasTuner prints the traceback of every failed trial by default; textsweep records it in the
# trial's MLflow run (failure.txt) and shows one line in the progress instead.
keras_tuner_config.DEBUG = False


def objective(config: SweepConfig) -> kt.Objective:
    direction = "min" if config.search.objective.endswith("loss") else "max"
    return kt.Objective(config.search.objective, direction=direction)


def tuner_arguments(config: SweepConfig) -> dict[str, Any]:
    """Constructor arguments of the algorithm's KerasTuner tuner, from the sweep file."""
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
    **mixin_kwargs: Any,
) -> kt.Tuner:
    """The algorithm's KerasTuner tuner over the seeds' hypermodel, with textsweep's hooks mixed in."""
    base = TUNER_CLASSES[config.search.algorithm]
    tuner_class = type(f"Sweep{base.__name__}", (*mixins, base), {}) if mixins else base
    tuner = tuner_class(
        hypermodel=LstmHyperModel(config.defaults, config.search.space),
        directory=str(directory.parent),
        project_name=directory.name,
        overwrite=overwrite,
        **tuner_arguments(config),
        **mixin_kwargs,
    )
    if config.search.algorithm == "hyperband":
        tuner.oracle.max_trials = config.search.max_trials
    return tuner


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


def sweep_identity(config: SweepConfig, data_fingerprint: str) -> dict[str, str]:
    """What must not change between a sweep and its resume: the search and the data."""
    # The budget may grow between runs (extend a sweep); what is searched, and on what, may not.
    # Only values that differ from textsweep's defaults: a new setting added later, at its
    # default, must not make every earlier sweep unresumable.
    search = config.search.model_dump(
        mode="json", exclude={"promote", "max_consecutive_failures", "max_trials"}, exclude_defaults=True
    )
    defaults = config.defaults.model_dump(mode="json", exclude_defaults=True)
    digest = hashlib.sha256(json.dumps([search, defaults], sort_keys=True).encode()).hexdigest()[:16]
    return {"search_digest": digest, "data_fingerprint": data_fingerprint}


def read_state(directory: Path) -> dict[str, Any] | None:
    path = directory / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_state(directory: Path, state: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))


def check_resumable(directory: Path, identity: dict[str, str], config_name: str) -> dict[str, Any] | None:
    """The saved state of an earlier run of this sweep, or None; refuse a changed sweep."""
    state = read_state(directory)
    if state is None:
        return None
    if state.get("search_digest") != identity["search_digest"]:
        changed = "search space or defaults"
    elif state.get("data_fingerprint") != identity["data_fingerprint"]:
        changed = "data (its fingerprint)"
    else:
        return state
    raise ConfigError(
        f"sweep {config_name!r} already has state in {directory} with a different {changed}; "
        "resuming would mix two searches. Pass --restart to start this sweep over, "
        "or give the changed sweep a new `name`."
    )


def discard_state(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)


# ---------------------------------------------------------------- progress


def _format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class ProgressReporting:
    """Tuner mixin: one live line per trial (rewritten in place on a terminal)."""

    def __init__(self, *args: Any, quiet: bool = False, stream: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._quiet = quiet
        self._stream = stream or sys.stdout
        self._live = getattr(self._stream, "isatty", lambda: False)()
        self._sweep_started = time.monotonic()

    def _progress_prefix(self, trial: kt.engine.trial.Trial) -> str:
        # KerasTuner numbers trials from 0 in creation order, in one process or across workers.
        budget = self.oracle.max_trials or "?"
        values = trial.hyperparameters.values
        shown = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items() if not k.startswith("tuner/"))
        return f"trial {int(trial.trial_id) + 1}/{budget} {shown}"

    def _best_so_far(self) -> str:
        best = self.oracle.get_best_trials(1)
        if not best or best[0].score is None:
            return "best -"
        return f"best {self.oracle.objective.name} {best[0].score:.4f} [{best[0].trial_id}]"

    def _eta(self, trial: kt.engine.trial.Trial, trial_elapsed: float, epoch_fraction: float) -> str:
        budget = self.oracle.max_trials
        if not budget or epoch_fraction <= 0:
            return "ETA -"
        per_trial = trial_elapsed / epoch_fraction
        # Trial ids count every trial of the sweep, so this holds after a resume and across workers.
        remaining_trials = max(budget - int(trial.trial_id) - 1, 0)
        return f"ETA {_format_duration(per_trial * (1 - epoch_fraction) + per_trial * remaining_trials)}"

    def _show(self, line: str, final: bool) -> None:
        if self._quiet:
            return
        if self._live:
            self._stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        elif final:
            self._stream.write(line + "\n")
        self._stream.flush()

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)
        self._trial_started = time.monotonic()
        self._trial_prefix = self._progress_prefix(trial)
        self._show(f"{self._trial_prefix} | starting | {self._best_so_far()}", final=False)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        epochs = trial.hyperparameters.values.get("tuner/epochs", self._epochs_per_trial)
        elapsed = time.monotonic() - self._trial_started
        value = (logs or {}).get(self.oracle.objective.name)
        shown = f"{self.oracle.objective.name} {value:.4f}" if value is not None else ""
        self._show(
            f"{self._trial_prefix} | epoch {epoch + 1}/{epochs} {shown} | "
            f"{_format_duration(elapsed)} | {self._eta(trial, elapsed, (epoch + 1) / epochs)} | {self._best_so_far()}",
            final=False,
        )

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_end(trial)
        elapsed = time.monotonic() - self._trial_started
        score = self.oracle.get_trial(trial.trial_id).score
        if trial.status == "COMPLETED" and score is not None:
            outcome = f"{self.oracle.objective.name} {score:.4f}"
        else:
            reason = (trial.message or "").strip().splitlines()
            outcome = f"{trial.status}: {reason[-1] if reason else '?'}"[:200]
        self._show(f"{self._trial_prefix} | done {outcome} in {_format_duration(elapsed)} | {self._best_so_far()}", final=True)

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        self._epochs_per_trial = fit_kwargs.get("epochs", 1)
        super().search(*fit_args, **fit_kwargs)
