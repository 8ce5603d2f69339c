"""The MLflow store: where it is, that it answers, the experiment a sweep file names, and where
a sweep's tuner state lives beside it.

Every store problem a user can cause (a server that does not answer, a database that refuses
the login, a folder that cannot be written, a missing driver) is one TrackingError in seconds,
before MLflow's own retries and before any run exists.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from textsweep.errors import TrackingError
from textsweep.tracking.tags import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

STORE_DIR = Path("mlruns")



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


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def check_store() -> None:
    """The store answers (a server, a database) or can be written (a local SQLite file), checked in
    seconds, before MLflow would retry it for minutes. Opens and creates nothing."""
    uri = tracking_uri()
    database = sqlite_path(uri)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    elif database is None and database_backend(uri) is not None:
        check_database(uri)
    elif database is not None and database.parent.is_dir():
        check_writable(database)  # a folder still to be made is made and checked by connect


def connect(*, create: bool = True) -> MlflowClient:
    """Point MLflow at the store, checked as check_store does, and open it.

    `create=False` (commands that only read: runs, predict, promote) refuses a local store that
    does not exist instead of creating an empty one.
    """
    uri = tracking_uri()
    database = sqlite_path(uri)
    if database is None:  # a server or a database
        check_store()
        mlflow.set_tracking_uri(uri)
        return open_store(uri)
    if not create and not database.is_file():
        raise TrackingError(
            f"there is no MLflow store here ({database} does not exist), so no sweep or model to read. Run this "
            "from the folder you ran `textsweep sweep` in (it holds mlruns/), or set MLFLOW_TRACKING_URI to the "
            "store you used"
        )
    mlflow.set_tracking_uri(uri)
    check_writable(database)  # makes the folder if need be
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

