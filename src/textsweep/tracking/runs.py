"""A job's MLflow run and what it holds: params, the dataset, per-epoch metrics, the sweep's summary.

Under `mlflow run`, MLflow has already opened a run (MLFLOW_RUN_ID). If it sits in the
experiment `name` (`mlflow run --experiment-name <name>`), textsweep logs into it; otherwise
textsweep opens its run in experiment `name` and leaves a note and a `textsweep.run_id` tag on
the launcher run pointing there, so every result lives where the sweep file says.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from textsweep import __version__, plots
from textsweep.config import SWEPT_PARAMS, SweepConfig, TrainingParams, space_entry_text
from textsweep.data import PreparedData
from textsweep.devices import gpu_in_use, gpu_names
from textsweep.text import EncodedSplits
from textsweep.tracking.artifacts import log_dataset_and_sweep_file
from textsweep.errors import SweepError
from textsweep.tracking.queries import kill_running_trial_runs, leaderboard, no_finished_trial, time_budget_reason
from textsweep.tracking.store import experiment_id
from textsweep.tracking.tags import (
    TAG_CPU, TAG_CPU_COUNT, TAG_DEVICE, TAG_GIT_COMMIT, TAG_GPU, TAG_GPU_COUNT, TAG_KERAS, TAG_TENSORFLOW,
    NOTE, TAG_BEST_RUN, TAG_BEST_TRIAL, TAG_DEADLINE, TAG_FAILURE, TAG_KIND, TAG_LAUNCHER, TAG_ORACLE, TAG_RUN,
    TAG_STOPPED_BY, TAG_VERSION,
)


@contextmanager
def job_run(
    client: MlflowClient, config: SweepConfig, *, kind: str, resume_run_id: str | None = None
) -> Iterator[mlflow.ActiveRun]:
    """The run of a textsweep job; ended FINISHED, FAILED on an error, KILLED on Ctrl-C."""
    launcher_id = os.environ.pop("MLFLOW_RUN_ID", None)  # set by `mlflow run`
    experiment = experiment_id(client, config.name)
    adopt = launcher_id if launcher_id and client.get_run(launcher_id).info.experiment_id == experiment else None
    run_id = resume_run_id or adopt
    tags = {TAG_KIND: kind, TAG_VERSION: __version__, **environment_tags()}
    if run_id:
        run = mlflow.start_run(run_id=run_id)
        mlflow.set_tags(tags)
    else:
        run = mlflow.start_run(experiment_id=experiment, run_name=f"{config.name}-{kind}", tags=tags)
    if launcher_id and launcher_id != run.info.run_id:
        client.set_tag(launcher_id, TAG_RUN, run.info.run_id)
        client.set_tag(
            launcher_id,
            NOTE,
            f"textsweep logged this {kind} in experiment '{config.name}', run {run.info.run_id}.",
        )
        mlflow.set_tag(TAG_LAUNCHER, launcher_id)
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


@contextmanager
def sweep_run(
    client: MlflowClient, config: SweepConfig, data: PreparedData, *, resume_run_id: str | None = None,
    deadline: float | None = None, oracle: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """The sweep's run, opened once: a new one with the sweep file, the dataset and the search's
    settings, or the resumed one, whose trial runs a dead process left RUNNING end KILLED.
    `deadline` (search.max_time) and a chief's `oracle` address are tags its workers read."""
    with job_run(client, config, kind="sweep", resume_run_id=resume_run_id) as run:
        if resume_run_id:
            kill_running_trial_runs(client, run.info.experiment_id, run.info.run_id,
                                    "interrupted: the sweep process died; resumed")
        else:
            log_dataset_and_sweep_file(config, data)
            mlflow.log_params(
                {"algorithm": config.search.algorithm, "max_trials": config.search.max_trials,
                 "objective": config.search.objective, "epochs": config.defaults.epochs}
                | {f"space.{name}": space_entry_text(name, entry.model_dump(mode="json", exclude_none=True))
                   for name, entry in config.search.space.items()}
            )
        mlflow.set_tag(TAG_DEADLINE, "" if deadline is None else f"{deadline:.3f}")
        if oracle is not None:
            mlflow.set_tag(TAG_ORACLE, oracle)
        yield run


@functools.cache
def environment_tags() -> dict[str, str]:
    """Device and software versions; no environment secret is ever read here."""
    import keras
    import tensorflow as tf
    from mlflow.utils.git_utils import get_git_commit

    gpus = gpu_names()
    tags = {
        TAG_DEVICE: gpus[0] if gpus else "CPU",
        TAG_GPU_COUNT: str(len(gpus)),
        TAG_GPU: gpu_in_use() or "none",  # the machine's GPU index, as workers are pinned
        TAG_CPU: platform.processor() or platform.machine(),
        TAG_CPU_COUNT: str(os.cpu_count()),
        TAG_TENSORFLOW: tf.__version__,
        TAG_KERAS: keras.__version__,
    }
    commit = get_git_commit(Path(__file__).resolve().parent)
    if commit:
        tags[TAG_GIT_COMMIT] = commit
    return tags


def log_params(params: TrainingParams, maxlen: int, encoded: EncodedSplits, searched_max_features: int | None = None) -> None:
    """Every training param, the padded length and kernel actually used, and the caps that applied."""
    from textsweep.model import lstm_kernel

    values = params.model_dump() | {"maxlen_effective": maxlen, "lstm_kernel": lstm_kernel(params)}
    if params.maxlen is None:  # derived from the data: the longest text, capped (text.EncodedSplits.resolve_maxlen)
        values["maxlen_longest"] = encoded.seen_by(params).longest(params.max_features)
    if searched_max_features is not None and searched_max_features != params.max_features:
        values["max_features_searched"] = searched_max_features  # capped to the vocabulary's size
    mlflow.log_params(values)


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


def log_reference_run(experiment: str, sweep_run_id: str, metrics: dict[str, float], params: dict[str, Any]) -> str:
    """The sweep's linear reference: one nested run tagged `reference` (not a trial), with its figures."""
    with mlflow.start_run(experiment_id=experiment, run_name="reference-tfidf-logreg", nested=True,
                          parent_run_id=sweep_run_id, tags={TAG_KIND: "reference"}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
    return run.info.run_id


def log_sweep_summary(client: MlflowClient, config: SweepConfig, experiment: str, sweep_run_id: str) -> pd.DataFrame:
    objective = config.search.objective
    table = leaderboard(client, experiment, sweep_run_id, objective)
    if table.empty:
        return table
    best = table.iloc[0]  # confirmed over seeds (search.confirm): the best mean
    mlflow.log_metric(f"best_{objective}", float(best[f"best_{objective}"]))
    if pd.notna(best.get(f"mean_{objective}")):
        mlflow.log_metric(f"mean_{objective}", float(best[f"mean_{objective}"]))
    mlflow.set_tags({TAG_BEST_TRIAL: best["trial_id"], TAG_BEST_RUN: best["run_id"]})
    mlflow.log_metric("trials_finished", len(table))
    mlflow.log_text(table.to_csv(index=False), "leaderboard.csv")
    swept = [name for name in config.search.space] or list(SWEPT_PARAMS[:1])
    mlflow.log_figure(plots.parallel_coordinates(table, swept, f"best_{objective}"), "parallel_coordinates.png")
    if len(table) >= 3:
        mlflow.log_figure(plots.hyperparameter_importance(table, swept, f"best_{objective}"), "hyperparameter_importance.png")
    return table


def log_sweep_outcome(
    client: MlflowClient, config: SweepConfig, experiment: str, sweep_run_id: str, stopped_by_time: bool
) -> tuple[pd.DataFrame, str | None]:
    """The sweep run's summary and what ended the search; the leaderboard, and when search.max_time
    ended it, why in words. A sweep with no finished trial is a SweepError naming the cause."""
    mlflow.set_tag(TAG_STOPPED_BY, "max_time" if stopped_by_time else "budget")
    table = log_sweep_summary(client, config, experiment, sweep_run_id)
    stop_reason = time_budget_reason(client, config, experiment, sweep_run_id, len(table)) if stopped_by_time else None
    if table.empty:
        mlflow.set_tag(TAG_FAILURE, "no trial finished" + (f": {stop_reason}" if stop_reason else ""))
        raise SweepError(no_finished_trial(client, config, experiment, sweep_run_id, stop_reason))
    return table, stop_reason
