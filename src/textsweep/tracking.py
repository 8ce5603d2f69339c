"""MLflow only: the store, a job's run, what a run holds, the per-trial hooks, leaderboard queries.

Nothing here knows the tuner or the jobs: jobs.py composes this module with tuning.py.

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

import fcntl
import json
import functools
import os
import platform
import re
import statistics
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from textsweep import __version__, plots
from textsweep.config import NAMED_PARAMS, SWEPT_PARAMS, SweepConfig, TrainingParams
from textsweep.data import PreparedData
from textsweep.devices import gpu_in_use, gpu_names
from textsweep.errors import TrackingError
from textsweep.vocab import EncodedSplits

STORE_DIR = Path("mlruns")
DEFAULT_TRACKING_URI = f"sqlite:///{STORE_DIR}/mlflow.db"
TOKENIZER_FILE = "tokenizer/vocabulary.json"
# Each tokenizer kind's artifact (its own JSON format: vocab.Vocabulary, subword.SubwordTokenizer).
TOKENIZER_FILES = {"word": TOKENIZER_FILE, "subword": "tokenizer/subword.json"}
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


LOCAL_UI = "http://127.0.0.1:5000"


def experiment_url(ui: str, experiment: str) -> str:
    """The experiment's runs in the MLflow UI at `ui`.

    The experiments carry MLflow's model-training kind tag, but MLflow 3.17.2's UI, in a browser
    that has not chosen a view yet, still opens a bare experiment URL on its GenAI overview
    (checked in headless Chromium); the UI's own `workflowType` parameter opens the runs.
    """
    return f"{ui.rstrip('/')}/#/experiments/{experiment}?workflowType=machine_learning"


def ui_command(uri: str, experiment: str | None = None) -> str:
    """How to browse the store: the command that starts the UI, then the experiment's page."""
    if uri.startswith(("http://", "https://")):
        server = redact(uri)
        return f"open {experiment_url(server, experiment) if experiment else server} in a browser"
    command = f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
    return f"{command}, then open {experiment_url(LOCAL_UI, experiment)}" if experiment else command


# The database drivers SQLAlchemy loads for MLflow's stores, by module, and the package to install.
DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary (or write the URI as postgresql+psycopg:// and pip install 'psycopg[binary]')",
    "psycopg": "'psycopg[binary]'",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient (or write the URI as mysql+pymysql:// and pip install PyMySQL)",
    "pymssql": "pymssql",
    "pyodbc": "pyodbc",
}
# MLflow's own experiment tag: its UI opens a "custom model development" experiment on its runs,
# not on the GenAI overview (traces, token usage) that MLflow 3.17 shows by default.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def connect(*, create: bool = True) -> MlflowClient:
    """Point MLflow at the store and check that it answers, in seconds, before MLflow retries it.

    `create=False` (commands that only read: runs, predict, promote) refuses a local store that
    does not exist instead of creating an empty one.
    """
    uri = tracking_uri()
    database = sqlite_path(uri)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    elif database is None and database_backend(uri) is not None:
        check_database(uri)
    if database is not None and not create and not database.is_file():
        raise TrackingError(
            f"there is no MLflow store here ({database} does not exist), so no sweep or model to read. Run this "
            "from the folder you ran `textsweep sweep` in (it holds mlruns/), or set MLFLOW_TRACKING_URI to the "
            "store you used"
        )
    mlflow.set_tracking_uri(uri)
    if database is None:
        return open_store(uri)
    check_writable(database)
    # Two processes creating one SQLite store at once both run MLflow's migrations and one dies
    # in alembic; the first to take this lock creates it, the other then finds it ready. The OS
    # drops the lock of a process that dies.
    with (database.parent / f".{database.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return open_store(uri)


def check_server(uri: str) -> None:
    """A tracking server that does not answer `/health` is reported before any run is created."""
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise TrackingError(
            f"MLflow tracking server {redact(uri)} is unreachable ({type(exc).__name__}); start it "
            "(mlflow server --host 127.0.0.1 ...) or unset MLFLOW_TRACKING_URI to use the local store"
        ) from None


# A database store's default port per backend, and how long to wait for it: MLflow itself retries
# a store it cannot open for about 100 s, with a warning each time, before a long traceback.
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
CONNECT_TIMEOUT_S = 5
# The drivers whose connect() takes a `connect_timeout` in seconds (a port that accepts the TCP
# connection but never answers as a database would otherwise hang the check).
DRIVERS_WITH_CONNECT_TIMEOUT = {"psycopg", "psycopg2", "pymysql", "mysqldb"}


def database_backend(uri: str) -> str | None:
    """`postgresql`, `mysql` or `mssql` for a database store's URI (with or without `+driver`), else None."""
    backend = urlsplit(uri).scheme.split("+")[0].lower()
    return backend if backend in DATABASE_PORTS else None


def check_database(uri: str) -> None:
    """A database store that is unreachable or refuses the login is one clear error, in seconds:
    its driver is loaded, its host and port are connected to, then one login is tried."""
    import socket

    import sqlalchemy

    url = sqlalchemy.engine.make_url(uri)
    timeout = {"connect_timeout": CONNECT_TIMEOUT_S} if url.get_driver_name() in DRIVERS_WITH_CONNECT_TIMEOUT else {}
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args=timeout)
    except ModuleNotFoundError as exc:
        raise missing_driver(uri, exc) from None
    host, port = url.host, url.port or DATABASE_PORTS[database_backend(uri)]
    if host:  # else a Unix socket, which the login below reaches
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            raise TrackingError(
                f"the MLflow database store {redact(uri)} is unreachable: nothing accepts connections on "
                f"{host}:{port} ({reason}); start the database, or fix the host and port in MLFLOW_TRACKING_URI "
                "(or unset it to use the local store)"
            ) from None
    try:
        engine.connect().close()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        if url.password:  # drivers do not print it, but a message must never carry it
            reason = re.sub(rf"(?<!\w){re.escape(str(url.password))}(?!\w)", "***", reason)
        where = f" on {host}:{port}" if host else ""
        raise TrackingError(
            f"the MLflow database store {redact(uri)} did not accept a connection{where}: {reason}; check that "
            "MLFLOW_TRACKING_URI names the database's host and port, a user and password it accepts, and a "
            "database that exists"
        ) from None
    finally:
        engine.dispose()


def missing_driver(uri: str, exc: ModuleNotFoundError) -> TrackingError:
    package = DRIVER_PACKAGES.get(exc.name or "", exc.name)
    return TrackingError(
        f"the MLflow store {redact(uri)} needs the database driver {exc.name!r}, which is not installed; "
        f"pip install {package}"
    )


def check_writable(database: Path) -> None:
    """Fail at once on a store that cannot be written (MLflow would retry for ~2 minutes first)."""
    folder = database.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if database.exists():
            database.open("r+b").close()
        else:
            tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise TrackingError(
            f"the MLflow store {database} cannot be written ({exc.strerror or exc}); run from a writable "
            "directory, fix the folder's permissions, or set MLFLOW_TRACKING_URI to a writable store "
            "(e.g. sqlite:////tmp/mlruns/mlflow.db)"
        ) from None


def open_store(uri: str) -> MlflowClient:
    """A client of the store, created or migrated now (MLflow opens it in the client's constructor),
    a missing database driver turned into the package to install."""
    try:
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    except ModuleNotFoundError as exc:
        raise missing_driver(uri, exc) from None
    except MlflowException as exc:
        if uri.startswith(("http://", "https://")):
            raise
        message = str(exc.message if hasattr(exc, "message") else exc).splitlines()[0][:300]
        raise TrackingError(f"cannot open the MLflow store {redact(uri)}: {message}") from None
    return client


def artifact_location(uri: str, name: str) -> str | None:
    """Keep a local SQLite store's artifacts beside it (mlruns/artifacts/<name>); servers decide their own."""
    database = sqlite_path(uri)
    if database is None:
        return None
    root = database.resolve().parent / "artifacts"
    return (root / re.sub(r"[^A-Za-z0-9._-]+", "_", name)).as_uri()


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment `name`, created (or, made before, tagged) as a model-training experiment."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name, artifact_location=artifact_location(tracking_uri(), name),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except MlflowException as exc:  # another process created it a moment ago
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise TrackingError(f"cannot create MLflow experiment {name!r}: {exc.message}") from None
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) "
            "or give the sweep file another `name`"
        )
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
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
def environment_tags() -> dict[str, str]:
    """Device and software versions; no environment secret is ever read here."""
    import keras
    import tensorflow as tf
    from mlflow.utils.git_utils import get_git_commit

    gpus = gpu_names()
    tags = {
        "textsweep.device": gpus[0] if gpus else "CPU",
        "textsweep.gpu_count": str(len(gpus)),
        "textsweep.gpu": gpu_in_use() or "none",  # the machine's GPU index, as workers are pinned
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


def log_params(params: TrainingParams, maxlen: int, encoded: EncodedSplits, searched_max_features: int | None = None) -> None:
    """Every training param, the padded length and kernel actually used, and the caps that applied."""
    from textsweep.model import lstm_kernel

    values = params.model_dump() | {"maxlen_effective": maxlen, "lstm_kernel": lstm_kernel(params)}
    if params.maxlen is None:  # derived from the data: the longest text, capped (vocab.resolve_maxlen)
        values["maxlen_longest"] = encoded.seen_by(params).longest(params.max_features)
    if searched_max_features is not None and searched_max_features != params.max_features:
        values["max_features_searched"] = searched_max_features  # capped to the vocabulary's size
    mlflow.log_params(values)


def log_dataset(data: PreparedData, name: str) -> None:
    """The three splits as MLflow dataset inputs, with the fingerprint textsweep gates on."""
    for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
        dataset = mlflow.data.from_pandas(data.frame(split), source=data.source, name=f"{name}-{split}", targets="label")
        mlflow.log_input(dataset, context=context)
    mlflow.log_params({"data_fingerprint": data.fingerprint, "data_source": data.source, "data_classes": json.dumps(list(data.classes)),
                       "data_cleaning": data.cleaning} | {f"data_{k}": v for k, v in data.stats.items()})


def log_vocabulary(encoded: EncodedSplits, params: TrainingParams, maxlen: int) -> None:
    """The tokenizer the model was trained with: ids < max_features and the padded length."""
    tokenizer = encoded.seen_by(params).vocabulary
    mlflow.log_text(tokenizer.capped(params.max_features, maxlen).to_json(), TOKENIZER_FILES[params.tokenizer])


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


# ---------------------------------------------------------------- a training run's epochs, a sweep's trials


def epoch_metrics_callback() -> Any:
    """Per-epoch metrics (step = epoch) of a plain `model.fit`.

    Not `mlflow.tensorflow.MlflowCallback`: it also logs every evaluation as `validation_*`,
    so the test-set evaluation would show up as validation metrics.
    """
    from keras.callbacks import Callback

    class EpochMetrics(Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)

    return EpochMetrics()


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
        maxlen = context.encoded.maxlen_for(params)
        supersede_earlier_runs(MlflowClient(), context.experiment_id, context.sweep_run_id, trial.trial_id)
        mlflow.start_run(
            experiment_id=context.experiment_id,
            run_name=f"trial-{trial.trial_id}",
            nested=True,
            parent_run_id=context.sweep_run_id,
            log_system_metrics=True,
            tags={TAG_TRIAL: trial.trial_id, TAG_TUNER: self.tuner_id, TAG_KIND: "trial", **environment_tags()},
        )
        log_params(params, maxlen, context.encoded, trial.hyperparameters.values.get("max_features"))
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
        maxlen = context.encoded.maxlen_for(params)
        log_vocabulary(context.encoded, params, maxlen)
        log_learning_curves(context.histories.pop(trial.trial_id, {}), f"trial {trial.trial_id}")
        # The best epoch's weights (KerasTuner's checkpoint), as the objective saw them; loaded
        # into the trained model rather than through `Tuner.load_model`, which rebuilds it (~0.7 s).
        model = self._trained_model
        model.load_weights(self._get_checkpoint_fname(trial.trial_id))
        log_keras_model(model)


def param_column(runs: pd.DataFrame, name: str) -> pd.Series:
    """A swept param of every run as numbers (booleans as True/False, names as text); missing in runs from before it existed."""
    column = runs.get(f"params.{name}")
    if column is None:
        return pd.Series([None] * len(runs), index=runs.index, dtype="object")
    if column.isin(["True", "False"]).all():
        return column == "True"
    if name in NAMED_PARAMS:
        return column.astype(object)
    return pd.to_numeric(column)


def leaderboard(client: MlflowClient, experiment: str, sweep_run_id: str, objective: str) -> pd.DataFrame:
    """Every finished trial of the sweep, best first, from what MLflow stored."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment],
        filter_string=f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and tags.`{TAG_KIND}` = 'trial' and attributes.status = 'FINISHED'",
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
            **{name: param_column(runs, name) for name in SWEPT_PARAMS},
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


def log_reference_run(experiment: str, sweep_run_id: str, metrics: dict[str, float], params: dict[str, Any]) -> str:
    """The sweep's linear reference: one nested run tagged `reference` (not a trial), with its figures."""
    with mlflow.start_run(experiment_id=experiment, run_name="reference-tfidf-logreg", nested=True,
                          parent_run_id=sweep_run_id, tags={TAG_KIND: "reference"}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
    return run.info.run_id


def reference_run(client: MlflowClient, experiment: str, sweep_run_id: str) -> Any | None:
    """The sweep's reference run, if it has one."""
    runs = client.search_runs([experiment], f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and tags.`{TAG_KIND}` = 'reference' "
                                            "and attributes.status = 'FINISHED'", max_results=1)
    return runs[0] if runs else None


def find_sweep_runs(
    client: MlflowClient, experiment: str, *, status: str | None = None, oracle: str | None = None, latest_first: str = "start_time"
) -> list[Any]:
    """The sweep runs of an experiment, newest first: all, those in `status`, or those of a chief's `oracle`."""
    query = f"tags.`{TAG_KIND}` = 'sweep'"
    if status:
        query += f" and attributes.status = '{status}'"
    if oracle:
        query += f" and tags.`textsweep.oracle` = '{oracle}'"
    return client.search_runs([experiment], filter_string=query, order_by=[f"attributes.{latest_first} DESC"])


def sweep_leaderboard(name: str, sweep_run_id: str | None = None) -> tuple[Any, pd.DataFrame]:
    """The latest (or given) sweep run of experiment `name` and its finished trials, best first."""
    client = connect(create=False)  # reads only: an empty folder gets no store
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise TrackingError(f"no MLflow experiment {name!r} in {redact(tracking_uri())} (experiments: {known})")
    if sweep_run_id:
        sweep = client.get_run(sweep_run_id)
    else:
        sweeps = find_sweep_runs(client, experiment.experiment_id)
        if not sweeps:
            raise TrackingError(f"experiment {name!r} has no sweep run; run `textsweep sweep --config <file>` first")
        sweep = sweeps[0]
    objective = sweep.data.params.get("objective", "val_accuracy")
    return sweep, leaderboard(client, experiment.experiment_id, sweep.info.run_id, objective)


def count_trial_runs(client: MlflowClient, experiment: str, sweep_run_id: str, status: str) -> int:
    """How many of the sweep's trial runs ended in `status` (FINISHED, FAILED, KILLED)."""
    query = f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and tags.`{TAG_KIND}` = 'trial' and attributes.status = '{status}'"
    return len(client.search_runs([experiment], filter_string=query))


def epoch_seconds(client: MlflowClient, experiment: str, sweep_run_id: str, metric: str) -> float | None:
    """The median time of one epoch in the sweep's trials, from when each epoch's `metric` was logged
    (a trial's first epoch counts from its run's start, so it includes building the model); None
    before any epoch ended."""
    runs = client.search_runs([experiment], filter_string=f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and tags.`{TAG_KIND}` = 'trial'")
    durations = []
    for run in runs:
        times = [run.info.start_time, *sorted(m.timestamp for m in client.get_metric_history(run.info.run_id, metric))]
        durations += [(end - start) / 1000 for start, end in zip(times, times[1:])]
    return statistics.median(durations) if durations else None


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


def supersede_earlier_runs(client: MlflowClient, experiment: str, sweep_run_id: str, trial_id: str) -> int:
    """A trial that starts again keeps one FINISHED run: an earlier FINISHED run of it ends KILLED.

    That happens when a process dies after a trial's run ended but before KerasTuner recorded the
    trial as done (the two are separate writes): KerasTuner then runs the trial again on resume.
    """
    query = (f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and tags.`{TAG_TRIAL}` = '{trial_id}' "
             f"and tags.`{TAG_KIND}` = 'trial' and attributes.status = 'FINISHED'")
    earlier = client.search_runs([experiment], filter_string=query)
    for run in earlier:
        client.set_tag(run.info.run_id, "textsweep.failure_reason",
                       "superseded: the trial ran again (its process died before KerasTuner recorded it)")
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(earlier)


STATE_FOLDER = Path(".textsweep") / "tuner"  # a remote store's tuner state, beside the sweep file


def tuner_directory(name: str, sweep_file: str | Path | None = None) -> Path:
    """KerasTuner's state of sweep `name` (oracle, trials, checkpoints), which resumes it.

    Beside a SQLite store (`mlruns/tuner/<name>`), so the two go together. A remote store (a
    tracking server, a database) cannot hold it: it lives beside the sweep file
    (`.textsweep/tuner/<name>` in the file's folder), so a sweep resumes from whichever folder it
    is run; a sweep given as a dict or a SweepConfig keeps it in the working folder. Either way
    the state records its store and sweep run, which a resume checks first.
    """
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    database = sqlite_path(tracking_uri())
    if database is not None:
        return database.parent / "tuner" / folder
    root = Path(sweep_file).resolve().parent if sweep_file is not None else Path.cwd()
    return root / STATE_FOLDER / folder


def find_run(client: MlflowClient, run_id: str) -> Any | None:
    """The run, deleted or not, or None when the store does not hold it."""
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
