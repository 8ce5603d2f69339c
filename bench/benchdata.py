"""What every bench script shares: the data it measures on, a throw-away working directory, and the
untracked and tracked searches the benches time."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# The Uzbek set beside the project (../shared/data), never copied into it; IMDB ships with a package.
# TEXTSWEEP_BENCH_DATA names the CSV where the checkout is elsewhere (a git worktree, say).
UZ_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment_uz.csv"


def data_source() -> str:
    """TEXTSWEEP_BENCH_DATA if set, else seed A's Uzbek reviews when present, else the embedded IMDB reviews."""
    if os.environ.get("TEXTSWEEP_BENCH_DATA"):
        return os.environ["TEXTSWEEP_BENCH_DATA"]
    return str(UZ_CSV) if UZ_CSV.is_file() else "imdb"


def scratch_directory(*, use_as_store: bool = False) -> Path:
    """A temporary directory removed at exit (trial checkpoints add up); optionally the cwd and
    default MLflow store (MLFLOW_TRACKING_URI unset), so a bench never writes into a real store."""
    workdir = Path(tempfile.mkdtemp(prefix="textsweep-bench-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    if use_as_store:
        os.chdir(workdir)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return workdir


def seed_a_config(name: str, *, smoke: bool, imdb_limit: int, limit: int | None = None,
                  smoke_defaults: dict | None = None, **defaults):
    """Seed A's defaults (with `defaults` overrides) on the bench data, as one-trial sweep config.

    On the IMDB fallback the data is cut to `imdb_limit` reviews padded to 200 words (seed A's
    short-text setting, the longest text, would mean thousands of steps). `--smoke` shrinks the
    model and the data to seconds; `smoke_defaults` adds what else a bench shrinks.
    """
    from textsweep.config import parse_config

    source = data_source()
    data = {"source": source, "limit": min(limit or imdb_limit, imdb_limit) if source == "imdb" else limit}
    if source == "imdb":
        defaults.setdefault("maxlen", 200)
    if smoke:
        defaults |= {"max_features": 300, "embed_dim": 8, "lstm_out": 8} | (smoke_defaults or {})
        data["limit"] = 400
    return parse_config({"name": name, "data": data, "defaults": defaults,
                         "search": {"algorithm": "random", "max_trials": 1}})


def untracked_trial_seconds(config, encoded, directory: Path) -> float:
    """Wall time of `config`'s KerasTuner search without MLflow: the baseline trial of the benches."""
    import time

    from textsweep.search.tuner import build_tuner, fit_arguments

    started = time.perf_counter()
    build_tuner(config, directory, overwrite=True).search(encoded, **fit_arguments(config))
    return time.perf_counter() - started


def tracked_search(config, encoded, directory: Path, *, tracker_class=None, observers=()):
    """`config`'s search tracked as `textsweep sweep` runs it in one process: a sweep run in the
    active store, each trial a nested run (`tracking.MlflowTrialObserver`, or `tracker_class`, a
    subclass of it), the quiet progress bar, then the bench's own `observers`. Returns the tuner."""
    import mlflow

    from textsweep.search import ProgressBar, run_search
    from textsweep.tracking import MlflowTrialObserver, experiment_id

    client = mlflow.MlflowClient()
    experiment = experiment_id(client, config.name)
    with mlflow.start_run(experiment_id=experiment, run_name="bench-sweep") as sweep_run:
        tracker = (tracker_class or MlflowTrialObserver)(client, experiment, sweep_run.info.run_id, encoded,
                                                         config.search.objective)
        return run_search(config, directory, encoded, [tracker, ProgressBar(quiet=True), *observers], overwrite=True)
