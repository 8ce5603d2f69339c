"""MLflow: the store, a training run, a sweep run with one nested run per KerasTuner trial.

Run layout (what the UI, `promote` and the tests read):
- a job run (tag `textsweep.kind` = `train` or `sweep`) in the experiment named by the sweep
  file's `name`; the sweep file as `sweep.yaml`, the dataset as an MLflow input;
- per trial a nested run (`mlflow.parentRunId`, tags `textsweep.trial_id`, `textsweep.tuner_id`)
  with every training param, per-epoch metrics (step = epoch, from 0), `best_<objective>`,
  `tokenizer/vocabulary.json`, a logged Keras model, `learning_curves.png`, device tags and
  MLflow system metrics.

Under `mlflow run`, MLflow has already opened a run (MLFLOW_RUN_ID). If it sits in the
experiment `name` (`mlflow run --experiment-name <name>`), textsweep logs into it; otherwise
textsweep opens its run in experiment `name` and leaves a note and a `textsweep.run_id` tag on
the launcher run pointing there, so every result lives where the sweep file says.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from textsweep import __version__, plots
from textsweep.config import SWEPT_PARAMS, SweepConfig, TrainingParams
from textsweep.data import PreparedData, load_data
from textsweep.errors import ConfigError, SweepError, TrackingError
from textsweep.distributed import WorkerPool, distributed_role, local_chief_environment, oracle_address, serve_oracle
from textsweep.tuning import (
    ProgressReporting,
    build_tuner,
    check_resumable,
    discard_state,
    fit_arguments,
    sweep_identity,
    write_state,
)
from textsweep.vocab import EncodedSplits, encode_splits

STORE_DIR = Path("mlruns")
DEFAULT_TRACKING_URI = f"sqlite:///{STORE_DIR}/mlflow.db"
TOKENIZER_FILE = "tokenizer/vocabulary.json"
KERAS_MODEL_NAME = "model"  # each trial's (and training run's) logged Keras model
TAG_KIND, TAG_TRIAL, TAG_TUNER, TAG_PARENT = "textsweep.kind", "textsweep.trial_id", "textsweep.tuner_id", "mlflow.parentRunId"


# ---------------------------------------------------------------- the store


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set (also by `mlflow run`), else the project's SQLite store."""
    # Absolute: MLflow caches stores by URI, and a relative one would follow the working directory.
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def redact(uri: str) -> str:
    """The URI without credentials, safe to print or log."""
    parts = urlsplit(uri)
    if parts.password or parts.username:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {redact(uri)} in a browser"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def connect() -> MlflowClient:
    """Point MLflow at the store, creating the local one, and check that it answers."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise TrackingError(
                f"MLflow tracking server {redact(uri)} is unreachable ({type(exc).__name__}); start it "
                "(mlflow server --host 127.0.0.1 ...) or unset MLFLOW_TRACKING_URI to use the local store"
            ) from None
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def artifact_location(uri: str, name: str) -> str | None:
    """Keep a local SQLite store's artifacts beside it (mlruns/artifacts/<name>); servers decide their own."""
    if not uri.startswith("sqlite:///"):
        return None
    root = Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
    return (root / re.sub(r"[^A-Za-z0-9._-]+", "_", name)).as_uri()


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location(tracking_uri(), name))
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) "
            "or give the sweep file another `name`"
        )
    return experiment.experiment_id


@contextmanager
def job_run(
    client: MlflowClient, config: SweepConfig, *, kind: str, resume_run_id: str | None = None
) -> Iterator[mlflow.ActiveRun]:
    """The run of a textsweep job; ended FINISHED, FAILED on an error, KILLED on Ctrl-C."""
    launcher_id = os.environ.pop("MLFLOW_RUN_ID", None)  # set by `mlflow run`
    experiment = experiment_id(client, config.name)
    adopt = launcher_id if launcher_id and client.get_run(launcher_id).info.experiment_id == experiment else None
    run_id = resume_run_id or adopt
    tags = {TAG_KIND: kind, "textsweep.version": __version__, **environment_tags()}
    if run_id:
        run = mlflow.start_run(run_id=run_id)
        mlflow.set_tags(tags)
    else:
        run = mlflow.start_run(experiment_id=experiment, run_name=f"{config.name}-{kind}", tags=tags)
    if launcher_id and launcher_id != run.info.run_id:
        client.set_tag(launcher_id, "textsweep.run_id", run.info.run_id)
        client.set_tag(
            launcher_id,
            "mlflow.note.content",
            f"textsweep logged this {kind} in experiment '{config.name}', run {run.info.run_id}.",
        )
        mlflow.set_tag("textsweep.launcher_run_id", launcher_id)
    try:
        yield run
    except KeyboardInterrupt:
        end_active_runs("KILLED")
        raise
    except BaseException:
        end_active_runs("FAILED")
        raise
    end_active_runs("FINISHED")


def end_active_runs(status: str) -> None:
    while mlflow.active_run() is not None:
        mlflow.end_run(status)


# ---------------------------------------------------------------- what a run holds


@functools.cache
def gpu_names() -> tuple[str, ...]:
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return tuple(names)


@functools.cache
def environment_tags() -> dict[str, str]:
    """Device and software versions; no environment secret is ever read here."""
    import keras
    import tensorflow as tf
    from mlflow.utils.git_utils import get_git_commit

    gpus = gpu_names()
    tags = {
        "textsweep.device": gpus[0] if gpus else "CPU",
        "textsweep.gpu_count": str(len(gpus)),
        "textsweep.cpu": platform.processor() or platform.machine(),
        "textsweep.cpu_count": str(os.cpu_count()),
        "textsweep.tensorflow_version": tf.__version__,
        "textsweep.keras_version": keras.__version__,
    }
    commit = get_git_commit(Path(__file__).resolve().parent)
    if commit:
        tags["textsweep.git_commit"] = commit
    return tags


def model_pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's inference of them costs ~9 s per logged model."""
    import keras
    import tensorflow as tf

    return [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]


def log_params(params: TrainingParams, maxlen: int) -> None:
    from textsweep.model import lstm_kernel

    values = params.model_dump() | {"maxlen_effective": maxlen, "lstm_kernel": lstm_kernel(params, bool(gpu_names()))}
    mlflow.log_params(values)


def log_dataset(data: PreparedData, name: str) -> None:
    """The three splits as MLflow dataset inputs, with the fingerprint textsweep gates on."""
    for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
        dataset = mlflow.data.from_pandas(data.frame(split), source=data.source, name=f"{name}-{split}", targets="label")
        mlflow.log_input(dataset, context=context)
    mlflow.log_params({"data_fingerprint": data.fingerprint, "data_source": data.source} | {f"data_{k}": v for k, v in data.stats.items()})


def log_vocabulary(encoded: EncodedSplits, params: TrainingParams, maxlen: int) -> None:
    """The tokenizer the model was trained with: ranks < max_features and the padded length."""
    mlflow.log_text(encoded.vocabulary.capped(params.max_features, maxlen).to_json(), TOKENIZER_FILE)


def log_keras_model(model: Any) -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # Padded word ids in, class probabilities out.
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("int32"), (-1, -1), "token_ids")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, model.output_shape[-1]), "probabilities")]),
    )
    return mlflow.tensorflow.log_model(
        model, name=KERAS_MODEL_NAME, signature=signature, pip_requirements=model_pip_requirements()
    )


def log_learning_curves(history: dict[str, list[float]], title: str) -> None:
    mlflow.log_figure(plots.learning_curves(history, title), "learning_curves.png", save_kwargs={"dpi": 80})


def log_sweep_file(config: SweepConfig) -> None:
    mlflow.log_text(config.to_yaml(), "sweep.yaml")


# ---------------------------------------------------------------- a training run


def prepare_data(config: SweepConfig) -> tuple[PreparedData, EncodedSplits]:
    """Load, clean, split and encode once per job: trials only cap ids and pad."""
    data = load_data(config.data)
    return data, encode_splits(data)


def _epoch_metrics_callback() -> Any:
    """Per-epoch metrics (step = epoch) of a plain `model.fit`.

    Not `mlflow.tensorflow.MlflowCallback`: it also logs every evaluation as `validation_*`,
    so the test-set evaluation would show up as validation metrics.
    """
    from keras.callbacks import Callback

    class EpochMetrics(Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)

    return EpochMetrics()


def run_training(config: SweepConfig) -> tuple[str, dict[str, float]]:
    """Train `defaults` once in one MLflow run; return its id and test metrics."""
    from keras.callbacks import TerminateOnNaN

    from textsweep.model import build_model, fit_model

    client = connect()
    data, encoded = prepare_data(config)  # before any run exists: bad data leaves no run behind
    params = config.defaults
    maxlen = encoded.resolve_maxlen(params.max_features, params.maxlen)
    with job_run(client, config, kind="train") as run:
        log_sweep_file(config)
        log_params(params, maxlen)
        log_dataset(data, config.name)
        model = build_model(params)
        history = fit_model(
            model, params.model_copy(update={"maxlen": maxlen}), encoded,
            callbacks=[_epoch_metrics_callback(), TerminateOnNaN()],
        )
        x_test, y_test = encoded.arrays("test", params.max_features, maxlen)
        test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0, batch_size=512)
        metrics = {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss)}
        mlflow.log_metrics(metrics)
        log_vocabulary(encoded, params, maxlen)
        log_learning_curves(history.history, f"{config.name}: training run")
        log_keras_model(model)
    return run.info.run_id, metrics


# ---------------------------------------------------------------- a sweep


@dataclass
class TrialContext:
    """What every trial run needs, computed once per sweep."""

    experiment_id: str
    encoded: EncodedSplits
    objective: str
    sweep_run_id: str
    histories: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # per-epoch logs


class TrialTracking:
    """Tuner mixin: each KerasTuner trial is a nested MLflow run under the active sweep run."""

    def __init__(self, *args: Any, trial_context: TrialContext, **kwargs: Any):
        self.trial_context = trial_context
        super().__init__(*args, **kwargs)

    def on_trial_begin(self, trial: Any) -> None:
        super().on_trial_begin(trial)
        context = self.trial_context
        params = self.hypermodel.params(trial.hyperparameters)
        maxlen = context.encoded.resolve_maxlen(params.max_features, params.maxlen)
        mlflow.start_run(
            experiment_id=context.experiment_id,
            run_name=f"trial-{trial.trial_id}",
            nested=True,
            parent_run_id=context.sweep_run_id,
            log_system_metrics=True,
            tags={TAG_TRIAL: trial.trial_id, TAG_TUNER: self.tuner_id, TAG_KIND: "trial", **environment_tags()},
        )
        log_params(params, maxlen)
        searched = {k: v for k, v in trial.hyperparameters.values.items() if k.startswith("tuner/")}
        if searched:  # Hyperband's bracket bookkeeping
            mlflow.log_params({k.replace("/", "_"): v for k, v in searched.items()})

    def on_trial_end(self, trial: Any) -> None:
        finished = trial.status == "COMPLETED"
        try:
            if finished:
                self._log_trial_outcome(trial)
            else:
                reason = (trial.message or trial.status).strip().splitlines()
                mlflow.set_tag("textsweep.failure_reason", reason[-1][:500] if reason else trial.status)
                mlflow.log_text(trial.message or trial.status, "failure.txt")
        finally:
            mlflow.end_run("FINISHED" if finished else "FAILED")
        super().on_trial_end(trial)

    def on_epoch_end(self, trial: Any, model: Any, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(trial, model, epoch, logs=logs)
        self._trained_model = model
        logs = {name: float(value) for name, value in (logs or {}).items()}
        mlflow.log_metrics(logs, step=epoch)
        history = self.trial_context.histories.setdefault(trial.trial_id, {})
        for name, value in logs.items():
            history.setdefault(name, []).append(value)

    def _log_trial_outcome(self, trial: Any) -> None:
        context = self.trial_context
        recorded = self.oracle.get_trial(trial.trial_id)
        score = recorded.metrics.get_best_value(context.objective)
        if score is not None:
            mlflow.log_metric(f"best_{context.objective}", score)
        params = self.hypermodel.params(trial.hyperparameters)
        maxlen = context.encoded.resolve_maxlen(params.max_features, params.maxlen)
        log_vocabulary(context.encoded, params, maxlen)
        log_learning_curves(context.histories.pop(trial.trial_id, {}), f"trial {trial.trial_id}")
        # The best epoch's weights (KerasTuner's checkpoint), as the objective saw them; loaded
        # into the trained model rather than through `Tuner.load_model`, which rebuilds it (~0.7 s).
        model = self._trained_model
        model.load_weights(self._get_checkpoint_fname(trial.trial_id))
        log_keras_model(model)


def leaderboard(client: MlflowClient, experiment: str, sweep_run_id: str, objective: str) -> pd.DataFrame:
    """Every finished trial of the sweep, best first, from what MLflow stored."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment],
        filter_string=f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and attributes.status = 'FINISHED'",
        output_format="pandas",
    )
    metric = f"metrics.best_{objective}"
    if runs.empty or metric not in runs:
        return pd.DataFrame()
    table = pd.DataFrame(
        {
            "trial_id": runs[f"tags.{TAG_TRIAL}"],
            "run_id": runs["run_id"],
            f"best_{objective}": runs[metric],
            **{name: pd.to_numeric(runs[f"params.{name}"]) for name in SWEPT_PARAMS},
            "tuner_id": runs[f"tags.{TAG_TUNER}"],
        }
    )
    return table.sort_values(f"best_{objective}", ascending=objective.endswith("loss")).reset_index(drop=True)


def log_sweep_summary(client: MlflowClient, config: SweepConfig, experiment: str, sweep_run_id: str) -> pd.DataFrame:
    objective = config.search.objective
    table = leaderboard(client, experiment, sweep_run_id, objective)
    if table.empty:
        return table
    best = table.iloc[0]
    mlflow.log_metric(f"best_{objective}", float(best[f"best_{objective}"]))
    mlflow.set_tags({"textsweep.best_trial_id": best["trial_id"], "textsweep.best_run_id": best["run_id"]})
    mlflow.log_metric("trials_finished", len(table))
    mlflow.log_text(table.to_csv(index=False), "leaderboard.csv")
    swept = [name for name in config.search.space] or list(SWEPT_PARAMS[:1])
    mlflow.log_figure(plots.parallel_coordinates(table, swept, f"best_{objective}"), "parallel_coordinates.png")
    if len(table) >= 3:
        mlflow.log_figure(plots.hyperparameter_importance(table, swept, f"best_{objective}"), "hyperparameter_importance.png")
    return table


def sweep_leaderboard(name: str, sweep_run_id: str | None = None) -> tuple[Any, pd.DataFrame]:
    """The latest (or given) sweep run of experiment `name` and its finished trials, best first."""
    client = connect()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise TrackingError(f"no MLflow experiment {name!r} in {redact(tracking_uri())} (experiments: {known})")
    if sweep_run_id:
        sweep = client.get_run(sweep_run_id)
    else:
        sweeps = client.search_runs(
            [experiment.experiment_id], f"tags.`{TAG_KIND}` = 'sweep'", order_by=["attributes.start_time DESC"], max_results=1
        )
        if not sweeps:
            raise TrackingError(f"experiment {name!r} has no sweep run; run `textsweep sweep --config <file>` first")
        sweep = sweeps[0]
    objective = sweep.data.params.get("objective", "val_accuracy")
    return sweep, leaderboard(client, experiment.experiment_id, sweep.info.run_id, objective)


def kill_running_trial_runs(
    client: MlflowClient, experiment: str, sweep_run_id: str, reason: str, tuner_id: str | None = None
) -> int:
    """End as KILLED the sweep's trial runs a dead process left RUNNING (all, or one worker's):
    their trial is run again, on resume or by another worker."""
    query = f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and attributes.status = 'RUNNING'"
    if tuner_id is not None:
        query += f" and tags.`{TAG_TUNER}` = '{tuner_id}'"
    stale = client.search_runs([experiment], filter_string=query)
    for run in stale:
        client.set_tag(run.info.run_id, "textsweep.failure_reason", reason)
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(stale)


def tuner_directory(name: str) -> Path:
    """KerasTuner's state (oracle, trials, checkpoints): beside a SQLite store, else under ./mlruns."""
    uri = tracking_uri()
    root = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else STORE_DIR
    return root / "tuner" / re.sub(r"[^A-Za-z0-9._-]+", "_", name)


@dataclass
class SweepResult:
    sweep_run_id: str
    experiment_id: str
    leaderboard: pd.DataFrame
    resumed: bool
    elapsed_s: float
    role: str = "single"


def run_sweep(
    config: SweepConfig,
    *,
    quiet: bool = False,
    restart: bool = False,
    stream: Any = None,
    workers: int = 0,
    config_path: Path | None = None,
) -> SweepResult:
    """Run (or resume) the KerasTuner search of `config`, one nested MLflow run per trial.

    The role comes from KerasTuner's variables: none set, one process runs every trial; `chief`
    serves the oracle and owns the sweep run; any other tuner id is a worker. `workers > 0`
    makes this process the chief of that many local worker processes.
    """
    if workers:
        if config_path is None:
            raise ValueError("local workers need the sweep file's path")
        os.environ.update(local_chief_environment())
    role = distributed_role()
    if role == "worker":
        return run_sweep_worker(config, quiet=quiet, stream=stream)
    started = time.monotonic()
    client = connect()
    data, encoded = prepare_data(config)
    directory = tuner_directory(config.name)
    if restart:
        discard_state(directory)
    identity = sweep_identity(config, data.fingerprint)
    state = check_resumable(directory, identity, config.name)
    resume_id = state.get("sweep_run_id") if state else None
    if resume_id and _run_is_gone(client, resume_id):
        resume_id = None
    experiment = experiment_id(client, config.name)
    with job_run(client, config, kind="sweep", resume_run_id=resume_id) as parent:
        sweep_run_id = parent.info.run_id
        write_state(directory, identity | {"sweep_run_id": sweep_run_id})
        if resume_id:
            kill_running_trial_runs(client, experiment, sweep_run_id, "interrupted: the sweep process died; resumed")
        else:
            log_sweep_file(config)
            log_dataset(data, config.name)
            mlflow.log_params(
                {
                    "algorithm": config.search.algorithm,
                    "max_trials": config.search.max_trials,
                    "objective": config.search.objective,
                    "epochs": config.defaults.epochs,
                }
                | {f"space.{name}": entry.model_dump_json(exclude_none=True) for name, entry in config.search.space.items()}
            )
        try:
            if role == "chief":
                mlflow.set_tag("textsweep.oracle", oracle_address())
                serve_as_chief(client, config, directory, experiment, sweep_run_id, workers, config_path,
                               quiet=quiet, stream=stream)
            else:
                context = TrialContext(experiment, encoded, config.search.objective, sweep_run_id)
                tuner = build_tuner(
                    config, directory, mixins=(TrialTracking, ProgressReporting),
                    trial_context=context, quiet=quiet, stream=stream,
                )
                tuner.search(encoded, **fit_arguments(config))
        except RuntimeError as exc:
            if "consecutive failures" not in str(exc):
                raise
            last = str(exc).strip().splitlines()[-1]
            raise SweepError(
                f"sweep {config.name!r} stopped: {config.search.max_consecutive_failures} trials in a row failed "
                f"(search.max_consecutive_failures). Last failure: {last}. The failed trial runs hold "
                "failure.txt; fix the cause, then rerun the same command to resume."
            ) from None
        table = log_sweep_summary(client, config, experiment, sweep_run_id)
    return SweepResult(sweep_run_id, experiment, table, bool(resume_id), time.monotonic() - started, role or "single")


def serve_as_chief(
    client: MlflowClient, config: SweepConfig, directory: Path, experiment: str, sweep_run_id: str,
    workers: int, config_path: Path | None, *, quiet: bool, stream: Any,
) -> None:
    """Serve the oracle; with `workers`, start them here and hand a dead worker's trial to the others."""
    tuner = build_tuner(config, directory)  # the chief runs no trial
    tuner.oracle.verbose = 0  # the workers report progress; KerasTuner's own table would repeat it
    if not workers:
        serve_oracle(tuner)
        return

    def requeue_lost_trials(servicer: Any) -> None:
        for tuner_id, exit_code in pool.newly_dead():
            trial_id = servicer.requeue_trial_of(tuner_id, f"worker {tuner_id} died (exit code {exit_code})")
            kill_running_trial_runs(client, experiment, sweep_run_id, f"worker {tuner_id} died during this trial", tuner_id)
            pool.say(f"worker {tuner_id} died (exit code {exit_code})"
                     + (f"; trial {trial_id} goes to another worker" if trial_id else ""))

    pool = WorkerPool(config_path=config_path, count=workers, quiet=quiet, stream=stream,
                      extra_env={"TEXTSWEEP_SWEEP_RUN_ID": sweep_run_id, "MLFLOW_TRACKING_URI": tracking_uri()})
    with pool:
        serve_oracle(tuner, poll=requeue_lost_trials)


def find_sweep_run(client: MlflowClient, experiment: str, timeout_s: float = 300) -> str:
    """A worker's sweep run: given by the launcher, or the running sweep run of this chief's oracle."""
    if run_id := os.environ.get("TEXTSWEEP_SWEEP_RUN_ID"):
        return run_id
    address = oracle_address()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = client.search_runs(
            [experiment],
            filter_string=f"tags.`textsweep.oracle` = '{address}' and attributes.status = 'RUNNING'",
            max_results=1,
        )
        if runs:
            return runs[0].info.run_id
        time.sleep(2)
    raise TrackingError(
        f"no running sweep run of chief {address} in this experiment after {timeout_s:.0f} s; start the chief "
        "(KERASTUNER_TUNER_ID=chief) with the same sweep file and MLFLOW_TRACKING_URI"
    )


def run_sweep_worker(config: SweepConfig, *, quiet: bool, stream: Any) -> SweepResult:
    """Worker role: pull trials from the chief's oracle, log each under the shared sweep run."""
    started = time.monotonic()
    client = connect()
    data, encoded = prepare_data(config)
    experiment = experiment_id(client, config.name)
    print(f"worker {os.environ['KERASTUNER_TUNER_ID']}: data ready, joining the sweep of chief {oracle_address()}",
          file=sys.stderr, flush=True)
    sweep_run_id = find_sweep_run(client, experiment)
    chief_fingerprint = client.get_run(sweep_run_id).data.params.get("data_fingerprint")
    if chief_fingerprint != data.fingerprint:
        raise ConfigError(
            f"this worker's data (fingerprint {data.fingerprint}) differs from the chief's ({chief_fingerprint}); "
            "give every process the same sweep file and data"
        )
    context = TrialContext(experiment, encoded, config.search.objective, sweep_run_id)
    tuner = build_tuner(
        config, tuner_directory(config.name), mixins=(TrialTracking, ProgressReporting),
        trial_context=context, quiet=quiet, stream=stream,
    )
    tuner.search(encoded, **fit_arguments(config))
    return SweepResult(sweep_run_id, experiment, pd.DataFrame(), False, time.monotonic() - started, f"worker {tuner.tuner_id}")


def _run_is_gone(client: MlflowClient, run_id: str) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "deleted"
    except mlflow.exceptions.MlflowException:
        return True
