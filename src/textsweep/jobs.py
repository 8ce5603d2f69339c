"""The jobs: train once, sweep (one process, a chief or a worker), promote. The public API's home.

Each job composes the stages: config -> data -> vocab -> the tuner (tuning.py, distributed.py)
-> MLflow (tracking.py) -> the registry. The sweep file and the data are checked before
TensorFlow and KerasTuner are imported, so a user's mistake is reported in about a second
rather than after TensorFlow's start-up. The CLI (cli.py) is a thin layer over these functions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from textsweep import tracking
from textsweep.config import SweepConfig, load_config, params_with, parse_config
from textsweep.data import PreparedData, load_data, prepare
from textsweep.errors import ConfigError, DataError, SweepError, TrackingError, option
from textsweep.vocab import EncodedSplits, encode_splits

DATAFRAME_SOURCE = "dataframe"  # data.source logged for a DataFrame passed to the API
TAG_DEADLINE = "textsweep.deadline"  # the sweep's search.max_time as a Unix time, for its workers
TAG_STOPPED_BY = "textsweep.stopped_by"  # what ended the search: `budget` (max_trials) or `max_time`
ConfigLike = str | Path | Mapping | SweepConfig


# ---------------------------------------------------------------- inputs


def resolve_config(config: ConfigLike) -> SweepConfig:
    """A sweep-file path, a dict with the same keys, or a `SweepConfig`, validated."""
    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(dict(config), source="the sweep config dict")
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise ConfigError(
        f"config must be a sweep-file path, a dict with a sweep file's keys, or a SweepConfig; got {type(config).__name__}"
    )


def prepare_data(config: SweepConfig, data: pd.DataFrame | None = None) -> tuple[PreparedData, EncodedSplits]:
    """Load `data.source` (or take `data`), clean, split and encode once per job: trials only cap ids and pad."""
    if data is None:
        prepared = load_data(config.data)
    elif isinstance(data, pd.DataFrame):
        prepared = prepare(data, config.data.model_copy(update={"source": DATAFRAME_SOURCE}))
    else:
        raise DataError(f"data must be a pandas DataFrame with columns {config.data.text_column!r} and "
                        f"{config.data.label_column!r}; got {type(data).__name__}")
    if note := prepared.script_note():
        print(note, file=sys.stderr, flush=True)
    return prepared, encode_splits(prepared, subword_size=config.subword_size)


def check_model_fits_data(config: SweepConfig, prepared: PreparedData) -> None:
    """What only the data can tell about the model (a sigmoid output for 3 classes), checked
    before any MLflow run exists, so that a mistake leaves nothing behind."""
    from textsweep.model import check_output_fits

    check_output_fits(config.defaults.output, len(prepared.classes))


def checked_callbacks(callbacks: Any) -> list[Any]:
    """`callbacks=` of the API as a list of Keras callbacks, or a ConfigError before any run exists."""
    if isinstance(callbacks, (str, bytes, Mapping)) or not isinstance(callbacks, Iterable):
        raise ConfigError(f"callbacks must be a list of Keras callbacks (keras.callbacks.Callback); got {callbacks!r}")
    callbacks = list(callbacks)
    if callbacks:
        import keras

        wrong = [c for c in callbacks if not isinstance(c, keras.callbacks.Callback)]
        if wrong:
            raise ConfigError(
                f"callbacks must be Keras callbacks (keras.callbacks.Callback); {wrong[0]!r} "
                f"({type(wrong[0]).__name__}) is not one"
            )
    return callbacks


# ---------------------------------------------------------------- results


class RawTextModel:
    """A classifier of raw texts: `predict(["a text", ...])` returns one row per text with its label
    and probabilities, cleaned and encoded the way its trial was trained."""

    def __init__(self, predict_frame: Any, uri: str):
        self._predict_frame = predict_frame
        self.uri = uri

    def predict(self, texts: str | Sequence[str] | pd.Series | pd.DataFrame) -> pd.DataFrame:
        from textsweep.serving import checked_texts  # the served model's rule: strings only, "" included

        try:
            frame = pd.DataFrame({"text": checked_texts(texts)})
        except DataError as exc:
            raise DataError(f'{exc}. Pass each text as a Python string ("" for an empty text)') from None
        predictions = self._predict_frame(frame).reset_index(drop=True)
        return pd.concat([frame, predictions.drop(columns=["text"], errors="ignore")], axis=1)

    def __repr__(self) -> str:
        return f"RawTextModel({self.uri!r})"


def load_model(uri: str) -> RawTextModel:
    """A registered (or any logged) textsweep model as a raw-text classifier,
    e.g. `load_model("models:/imdb-sentiment@champion").predict(["a wonderful film"])`."""
    from textsweep.registry import load_classifier

    return RawTextModel(load_classifier(uri).predict, uri)


def load_trial_model(experiment_id: str, run_id: str) -> RawTextModel:
    """A trial's own Keras model and tokenizer (no registry needed) as a raw-text classifier."""
    from textsweep.registry import TrialChoice, trial_keras_model, trial_vocabulary
    from textsweep.serving import classify
    from textsweep.vocab import load_tokenizer

    tracking.connect(create=False)
    trial = TrialChoice("", experiment_id, run_id, "", "", float("nan"))
    keras_model, vocabulary = trial_keras_model(trial), load_tokenizer(trial_vocabulary(trial))
    return RawTextModel(lambda frame: classify(keras_model, vocabulary, frame["text"].tolist()), f"runs:/{run_id}")


@dataclass
class TrainResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]


@dataclass
class SweepResult:
    """A finished (or resumed, or budget-ended) sweep, read back from MLflow."""

    sweep_run_id: str
    experiment_id: str
    experiment_name: str
    leaderboard: pd.DataFrame  # finished trials, best first
    resumed: bool
    elapsed_s: float
    role: str = "single"
    stopped_by: str | None = None  # "max_time" when search.max_time ended the search
    stop_reason: str | None = None  # then, in words: the budget, and how long an epoch and a trial take
    reference: dict[str, float] | None = None  # the linear reference's figures (search.reference)
    config: SweepConfig | None = field(default=None, repr=False)
    data: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def best_run_id(self) -> str | None:
        return None if self.leaderboard.empty else str(self.leaderboard.iloc[0]["run_id"])

    @property
    def best_params(self) -> dict[str, Any]:
        """The best trial's full training params (searched values over the sweep file's defaults)."""
        if self.leaderboard.empty or self.config is None:
            return {}
        best = self.leaderboard.iloc[0]
        return params_with(self.config.defaults, {name: best[name] for name in self.config.search.space}).model_dump()

    def best_model(self) -> RawTextModel:
        """The best trial's model, usable on raw text before any promotion."""
        if self.best_run_id is None:
            raise SweepError(f"sweep run {self.sweep_run_id} has no finished trial; resume the sweep first")
        return load_trial_model(self.experiment_id, self.best_run_id)

    def promote(self) -> Any:
        """Evaluate the best trial on the test split, register it, and move the alias if it wins."""
        if self.config is None:
            raise SweepError("this result has no sweep config; call textsweep.promote(config, sweep_run_id=...)")
        return promote(self.config, sweep_run_id=self.sweep_run_id, data=self.data)


# ---------------------------------------------------------------- train


def train(config: ConfigLike, *, data: pd.DataFrame | None = None) -> TrainResult:
    """Train the sweep file's `defaults` once, in one MLflow run; returns its id and test metrics."""
    config = resolve_config(config)
    client = tracking.connect()
    prepared, encoded = prepare_data(config, data)  # before any run exists: bad data leaves no run behind
    check_model_fits_data(config, prepared)
    import mlflow
    from keras.callbacks import TerminateOnNaN

    from textsweep.model import build_model, fit_model

    defaults = config.defaults
    params = defaults.model_copy(update={"max_features": encoded.cap_max_features(defaults.max_features, defaults.tokenizer)})
    encoded, maxlen = encoded.seen_by(params), encoded.maxlen_for(params)
    with tracking.job_run(client, config, kind="train") as run:
        tracking.log_sweep_file(config)
        tracking.log_params(params, maxlen, encoded)
        tracking.log_dataset(prepared, config.name)
        model = build_model(params, len(encoded.classes))
        history = fit_model(
            model, params.model_copy(update={"maxlen": maxlen}), encoded,
            callbacks=[tracking.epoch_metrics_callback(), TerminateOnNaN()],
        )
        x_test, y_test = encoded.arrays("test", params.max_features, maxlen)
        test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0, batch_size=512)
        metrics = {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss)}
        mlflow.log_metrics(metrics)
        tracking.log_vocabulary(encoded, params, maxlen)
        tracking.log_learning_curves(history.history, f"{config.name}: training run")
        tracking.log_keras_model(model)
    return TrainResult(run.info.run_id, run.info.experiment_id, metrics)


# ---------------------------------------------------------------- promote


def promote(config: ConfigLike, *, sweep_run_id: str | None = None, data: pd.DataFrame | None = None) -> Any:
    """Evaluate a sweep's best trial on the test split, register it, move the alias if it beats the champion."""
    from textsweep.registry import promote_if_better as promote_best_trial

    config = resolve_config(config)
    if data is not None:
        prepared, _ = prepare_data(config, data)
        return promote_best_trial(config, sweep_run_id=sweep_run_id, data=prepared)
    return promote_best_trial(config, sweep_run_id=sweep_run_id)


# ---------------------------------------------------------------- sweep


@contextlib.contextmanager
def environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `overrides` for the duration (a notebook's next sweep must not inherit them)."""
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sweep(
    config: ConfigLike,
    *,
    data: pd.DataFrame | None = None,
    quiet: bool = False,
    restart: bool = False,
    workers: int = 0,
    callbacks: Sequence[Any] = (),
    stream: Any = None,
) -> SweepResult:
    """Run (or resume) the KerasTuner search of `config`, one nested MLflow run per trial.

    `config`: a sweep-file path, a dict with the same keys, or a `SweepConfig`. `data`: a pandas
    DataFrame used instead of `data.source` (fingerprinted and logged as an MLflow input like a
    file). `quiet`: no progress bar. `restart`: discard the sweep's saved tuner state.
    `workers`: run that many local worker processes, this process serving KerasTuner's oracle.
    `callbacks`: extra Keras callbacks for every trial's `fit`.

    The role comes from KerasTuner's variables: none set, one process runs every trial;
    `KERASTUNER_TUNER_ID=chief` serves the oracle and owns the sweep run; any other tuner id is a
    worker that joins the chief's sweep run.

    The tuner state that resumes the sweep lives beside a SQLite store, and with a remote store
    beside the sweep file (the working folder for a dict or a `SweepConfig`): tracking.tuner_directory.
    """
    sweep_file = Path(config) if isinstance(config, (str, Path)) else None
    config = resolve_config(config)
    if workers < 0:
        raise ConfigError(f"workers must be 0 or more, got {workers}")
    callbacks = checked_callbacks(callbacks)
    client = tracking.connect()
    prepared, encoded = prepare_data(config, data)
    check_model_fits_data(config, prepared)
    directory = tracking.tuner_directory(config.name, sweep_file)
    from textsweep.distributed import distributed_role, local_chief_environment

    with environment(local_chief_environment() if workers else {}):
        role = distributed_role()
        if role == "chief":
            from textsweep.devices import stay_off_gpus

            stay_off_gpus()  # before its tuner builds a model: the GPUs are the workers'
        if role == "worker":
            return sweep_as_worker(client, config, prepared, encoded, directory, quiet=quiet, callbacks=callbacks,
                                   stream=stream)
        return sweep_as_owner(
            client, config, prepared, encoded, data, directory, role=role or "single", quiet=quiet, restart=restart,
            workers=workers, callbacks=callbacks, stream=stream,
        )


def sweep_as_owner(
    client: Any, config: SweepConfig, prepared: PreparedData, encoded: EncodedSplits, data: pd.DataFrame | None,
    directory: Path, *, role: str, quiet: bool, restart: bool, workers: int, callbacks: Sequence[Any], stream: Any,
) -> SweepResult:
    """One process running every trial, or the chief: either way the owner of the sweep run."""
    import mlflow

    from textsweep.tuning import check_resumable, discard_state, space_entry_text, sweep_identity, write_state

    started = time.monotonic()
    # search.max_time counts from this run's start: a rerun with a larger budget resumes
    deadline = time.time() + config.search.max_time_seconds if config.search.max_time else None
    with sweep_owner_lock(directory, config.name, role):
        if restart:
            discard_state(directory)
        identity = sweep_identity(config, prepared.fingerprint)
        state = check_resumable(directory, identity, config.name)
        resume_id = state.get("sweep_run_id") if state else None
        if resume_id:
            check_state_store(client, config, directory, state)
        experiment = tracking.experiment_id(client, config.name)
        with tracking.job_run(client, config, kind="sweep", resume_run_id=resume_id) as parent:
            sweep_run_id = parent.info.run_id
            # The store, experiment and sweep run this state belongs to: check_state_store on resume.
            write_state(directory, identity | {"sweep_run_id": sweep_run_id, "store": tracking.redact(tracking.tracking_uri()),
                                               "experiment": config.name, "experiment_id": experiment})
            if resume_id:
                tracking.kill_running_trial_runs(client, experiment, sweep_run_id, "interrupted: the sweep process died; resumed")
            else:
                tracking.log_sweep_file(config)
                tracking.log_dataset(prepared, config.name)
                mlflow.log_params(
                    {
                        "algorithm": config.search.algorithm,
                        "max_trials": config.search.max_trials,
                        "objective": config.search.objective,
                        "epochs": config.defaults.epochs,
                    }
                    | {f"space.{name}": space_entry_text(name, entry.model_dump(mode="json", exclude_none=True))
                       for name, entry in config.search.space.items()}
                )
            reference = log_reference(client, config, prepared, experiment, sweep_run_id)
            context = tracking.TrialContext(experiment, encoded, config.search.objective, sweep_run_id)
            mlflow.set_tag(TAG_DEADLINE, "" if deadline is None else f"{deadline:.3f}")  # workers read it
            with consecutive_failures_as_sweep_error(config):
                if role == "chief":
                    from textsweep.distributed import oracle_address

                    mlflow.set_tag("textsweep.oracle", oracle_address())
                    tuner = serve_as_chief(client, config, directory, context, workers, data, deadline,
                                           quiet=quiet, stream=stream)
                else:
                    tuner = search(config, directory, context, quiet=quiet, callbacks=callbacks, stream=stream,
                                   deadline=deadline)
            stopped_by = "max_time" if tuner.stopped_by_time else None
            mlflow.set_tag(TAG_STOPPED_BY, stopped_by or "budget")
            table = tracking.log_sweep_summary(client, config, experiment, sweep_run_id)
            stop_reason = time_budget_reason(client, config, experiment, sweep_run_id, len(table)) if stopped_by else None
            if table.empty:
                mlflow.set_tag("textsweep.failure_reason", "no trial finished" + (f": {stop_reason}" if stop_reason else ""))
                raise SweepError(no_finished_trial(client, config, experiment, sweep_run_id, stop_reason))
    return SweepResult(
        sweep_run_id, experiment, config.name, table, bool(resume_id), time.monotonic() - started, role,
        stopped_by=stopped_by, stop_reason=stop_reason, reference=reference, config=config, data=data,
    )


def check_state_store(client: Any, config: SweepConfig, directory: Path, state: dict[str, Any]) -> None:
    """Resume only tuner state whose sweep run this store holds.

    State that belongs to another store (a fresh tracking server, a deleted mlflow.db, a sweep
    run deleted in the UI) would resume as a partial sweep: KerasTuner skips the trials it ran,
    which this store does not hold. Refused before anything is created, with the two ways out.
    """
    run_id = state["sweep_run_id"]
    run = tracking.find_run(client, run_id)
    experiment = client.get_experiment_by_name(config.name)
    in_experiment = run is not None and experiment is not None and run.info.experiment_id == experiment.experiment_id
    if in_experiment and run.info.lifecycle_stage != "deleted":
        return
    store, recorded = tracking.redact(tracking.tracking_uri()), state.get("store")  # older state files lack it
    if run is not None and run.info.lifecycle_stage == "deleted":
        found, resume = f"that run is deleted in {store}", f"restore it (mlflow runs restore --run-id {run_id}) to resume"
    else:
        found = f"{store} holds no such run in experiment {config.name!r}"
        resume = f"set MLFLOW_TRACKING_URI to {recorded} to resume it there" if recorded and recorded != store else None
    raise SweepError(
        f"the tuner state of sweep {config.name!r} in {directory} belongs to sweep run {run_id}"
        + (f" in store {recorded}" if recorded else "") + f", but {found}: resuming it would leave a partial sweep "
        f"here, without the trials that run holds. Pass {option('restart', True)} to start the sweep afresh in "
        f"{store} (discarding that tuner state)" + (f", or {resume}" if resume else "") + "."
    )


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def time_budget_reason(client: Any, config: SweepConfig, experiment: str, sweep_run_id: str, finished: int) -> str:
    """Why search.max_time ended the search, with what an epoch and a trial take here (measured
    from the sweep's trial runs), so the next budget can be chosen."""
    reason = (f"search.max_time ({config.search.max_time}) ended the search after {finished} finished "
              f"trial{'' if finished == 1 else 's'}")
    epoch = tracking.epoch_seconds(client, experiment, sweep_run_id, config.search.objective)
    if epoch is not None:
        trial = epoch * config.defaults.epochs
        reason += (f"; here an epoch takes about {duration_text(epoch)} and a trial of {config.defaults.epochs} epochs "
                   f"about {duration_text(trial)}" + (", more than the whole budget" if trial > config.search.max_time_seconds else ""))
    return f"{reason}. Rerun the same command with a larger search.max_time to resume (finished trials are kept)"


def no_finished_trial(client: Any, config: SweepConfig, experiment: str, sweep_run_id: str, stop_reason: str | None) -> str:
    """The error of a sweep that ended without a finished trial, naming its cause."""
    failed = tracking.count_trial_runs(client, experiment, sweep_run_id, "FAILED")
    if failed:
        cause = (f"its {failed} failed trial run{'s hold' if failed > 1 else ' holds'} failure.txt with the reason. "
                 "Fix the cause, then rerun the same command to resume")
    elif stop_reason:
        cause = stop_reason
    else:
        cause = f"no trial ran. Rerun the same command to resume, or pass {option('restart', True)} to start it afresh"
    return f"sweep {config.name!r} ended with no finished trial: {cause}"


def log_reference(client: Any, config: SweepConfig, prepared: PreparedData, experiment: str,
                  sweep_run_id: str) -> dict[str, float] | None:
    """The sweep's linear reference, fitted once (seconds) on the training split and logged as a
    nested run: the figure the LSTM trials have to beat. A resumed sweep reuses its run."""
    if not config.search.reference:
        return None
    if (existing := tracking.reference_run(client, experiment, sweep_run_id)) is not None:
        return dict(existing.data.metrics)
    from textsweep.reference import fit_reference

    fitted = fit_reference(prepared)
    metrics = {"val_accuracy": fitted.val_accuracy, "test_accuracy": fitted.test_accuracy,
               "test_f1_macro": fitted.test_f1_macro, "fit_seconds": fitted.fit_seconds}
    tracking.log_reference_run(experiment, sweep_run_id, metrics, fitted.params)
    return metrics


def search(
    config: SweepConfig, directory: Path, context: tracking.TrialContext, *, quiet: bool = True,
    callbacks: Sequence[Any] = (), stream: Any = None, mixins: tuple[type, ...] = (), overwrite: bool = False,
    deadline: float | None = None,
) -> Any:
    """KerasTuner's search loop in this process, every trial tracked as a nested MLflow run.

    The one tracked search: sweeps and the benches (which add `mixins` to measure it) both run it.
    """
    from textsweep.tuning import ProgressReporting, build_tuner, fit_arguments

    tuner = build_tuner(
        config, directory, mixins=(*mixins, tracking.TrialTracking, ProgressReporting), overwrite=overwrite,
        deadline=deadline, num_classes=len(context.encoded.classes), vocabulary_sizes=context.encoded.vocabulary_sizes(),
        trial_context=context, quiet=quiet, stream=stream,
    )
    arguments = fit_arguments(config)
    arguments["callbacks"] = [*arguments["callbacks"], *callbacks]
    tuner.search(context.encoded, **arguments)
    return tuner


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


@contextlib.contextmanager
def sweep_owner_lock(directory: Path, name: str, role: str) -> Iterator[None]:
    """One owner per sweep: a second process on a running sweep is refused, naming the first.

    An OS file lock (flock) beside the tuner state: the OS releases it when its process dies,
    so a sweep killed with kill -9 never blocks its own resume.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    path = directory.parent / f"{directory.name}.owner"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise SweepError(running_elsewhere(name, lock.read())) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "role": role,
                 "started": datetime.now().isoformat(timespec="seconds")}
        if role == "chief":
            from textsweep.distributed import oracle_address

            owner["oracle"] = oracle_address()
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps(owner))
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()


def running_elsewhere(name: str, owner_json: str) -> str:
    try:
        owner = json.loads(owner_json)
    except ValueError:
        owner = {}
    who = f"process {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}"
    if owner.get("oracle"):
        ip, port = owner["oracle"].rsplit(":", 1)
        join = (f"to add this machine to it, join as a worker: KERASTUNER_TUNER_ID=tuner<N> "
                f"KERASTUNER_ORACLE_IP={ip} KERASTUNER_ORACLE_PORT={port} textsweep sweep --config <the same file>")
    else:
        join = ("a single-process sweep takes no workers: to run trials in parallel, stop it (Ctrl-C; it resumes) "
                f"and rerun with {option('workers', 2)} (or more)")
    return (f"sweep {name!r} is already running ({who}); running it twice would run every trial twice. "
            f"Wait for it to finish (then this command resumes it), or {join}")


def worker_sweep_file(directory: Path, config: SweepConfig, data: pd.DataFrame | None) -> Path:
    """The sweep file (and a DataFrame's rows) the chief's local workers start from."""
    folder = directory / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        data.to_parquet(folder / "data.parquet", index=False)
        config = config.model_copy(update={"data": config.data.model_copy(update={"source": str(folder / "data.parquet")})})
    path = folder / "sweep.yaml"
    path.write_text(config.to_yaml())
    return path


def serve_as_chief(
    client: Any, config: SweepConfig, directory: Path, context: tracking.TrialContext, workers: int,
    data: pd.DataFrame | None, deadline: float | None, *, quiet: bool, stream: Any,
) -> Any:
    """Serve the oracle; with `workers`, start them here and hand a dead worker's trial to the others."""
    from textsweep.distributed import WorkerPool, serve_oracle
    from textsweep.tuning import build_tuner

    tuner = build_tuner(config, directory, deadline=deadline, num_classes=len(context.encoded.classes),
                        vocabulary_sizes=context.encoded.vocabulary_sizes())  # the chief runs no trial
    tuner.oracle.verbose = 0  # the workers report progress; KerasTuner's own table would repeat it
    timeout = config.search.worker_timeout_seconds
    pool = None
    if workers:
        pool = WorkerPool(
            config_path=worker_sweep_file(directory, config, data), count=workers, quiet=quiet, stream=stream,
            extra_env={"TEXTSWEEP_SWEEP_RUN_ID": context.sweep_run_id, "MLFLOW_TRACKING_URI": tracking.tracking_uri()},
        )

    def say(line: str) -> None:
        if pool is not None:
            pool.say(line)
        else:
            print(f"[chief] {line}", file=sys.stderr, flush=True)

    def requeue_lost_trials(servicer: Any) -> None:
        """A local worker that died, or any worker silent for search.worker_timeout: its trial goes to another."""
        lost = [(tuner_id, f"worker {tuner_id} died (exit code {code})") for tuner_id, code in (pool.newly_dead() if pool else [])]
        lost += [(tuner_id, f"worker {tuner_id} reported no epoch for {config.search.worker_timeout} (search.worker_timeout)")
                 for tuner_id in servicer.silent_workers(timeout)]
        for tuner_id, reason in lost:
            trial_id = servicer.requeue_trial_of(tuner_id, reason)
            tracking.kill_running_trial_runs(client, context.experiment_id, context.sweep_run_id,
                                             f"{reason} during this trial", tuner_id)
            say(reason + (f"; trial {trial_id} goes to another worker" if trial_id else ""))

    with pool if pool is not None else contextlib.nullcontext():
        serve_oracle(tuner, poll=requeue_lost_trials)
    return tuner


def chief_sweep_run(client: Any, experiment: str, timeout_s: float = 300) -> str:
    """A worker's sweep run: given by the launcher, or the running sweep run of this chief's oracle."""
    from textsweep.distributed import oracle_address

    if run_id := os.environ.get("TEXTSWEEP_SWEEP_RUN_ID"):
        return run_id
    address = oracle_address()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = tracking.find_sweep_runs(client, experiment, status="RUNNING", oracle=address)
        if runs:
            return runs[0].info.run_id
        time.sleep(2)
    raise TrackingError(
        f"no running sweep run of chief {address} in this experiment after {timeout_s:.0f} s; start the chief "
        "(KERASTUNER_TUNER_ID=chief) with the same sweep file and MLFLOW_TRACKING_URI"
    )


def sweep_as_worker(
    client: Any, config: SweepConfig, prepared: PreparedData, encoded: EncodedSplits, directory: Path,
    *, quiet: bool, callbacks: Sequence[Any], stream: Any,
) -> SweepResult:
    """Worker role: pull trials from the chief's oracle, log each under the shared sweep run."""
    from textsweep.distributed import WorkerHeartbeat, oracle_address

    started = time.monotonic()
    experiment = tracking.experiment_id(client, config.name)
    print(f"worker {os.environ['KERASTUNER_TUNER_ID']}: data ready, joining the sweep of chief {oracle_address()}",
          file=sys.stderr, flush=True)
    sweep_run_id = chief_sweep_run(client, experiment)
    sweep_run = client.get_run(sweep_run_id)
    chief_fingerprint = sweep_run.data.params.get("data_fingerprint")
    # The chief's budget: its oracle starts no trial after it, and this worker's running trial
    # stops at the end of its epoch.
    deadline = float(sweep_run.data.tags[TAG_DEADLINE]) if sweep_run.data.tags.get(TAG_DEADLINE) else None
    if chief_fingerprint != prepared.fingerprint:
        raise ConfigError(
            f"this worker's data (fingerprint {prepared.fingerprint}) differs from the chief's ({chief_fingerprint}); "
            "give every process the same sweep file and data"
        )
    context = tracking.TrialContext(experiment, encoded, config.search.objective, sweep_run_id)
    tuner = search(config, directory, context, quiet=quiet, callbacks=callbacks,
                   stream=stream, mixins=(WorkerHeartbeat,), deadline=deadline)
    return SweepResult(
        sweep_run_id, experiment, config.name, pd.DataFrame(), False, time.monotonic() - started,
        f"worker {tuner.tuner_id}", config=config,
    )
