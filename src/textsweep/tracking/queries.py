"""Reading a sweep back from MLflow: its leaderboard, its runs by kind and status, and their repair."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from textsweep.config import NAMED_PARAMS, SWEPT_PARAMS, SweepConfig
from textsweep.errors import SweepError, TrackingError, option
from textsweep.tracking.store import connect, redact, tracking_uri
from textsweep.tracking.tags import (
    KIND_EXECUTION, MEAN_METRIC, SEEDS_METRIC, STD_METRIC, TAG_FAILURE, TAG_KIND, TAG_ORACLE, TAG_PARENT, TAG_SWEEP_RUN,
    TAG_TRIAL, TAG_TUNER,
)


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
    best, mean, std = f"best_{objective}", MEAN_METRIC.format(objective=objective), STD_METRIC.format(objective=objective)
    missing = pd.Series(float("nan"), index=runs.index)
    table = pd.DataFrame(
        {
            "trial_id": runs[f"tags.{TAG_TRIAL}"],
            "run_id": runs["run_id"],
            best: runs[metric],
            # Confirmed trials only (search.confirm): over all their executions; NaN for the others.
            mean: runs.get(f"metrics.{mean}", missing),
            std: runs.get(f"metrics.{std}", missing),
            SEEDS_METRIC: runs.get(f"metrics.{SEEDS_METRIC}", missing).astype("Int64"),
            **{name: param_column(runs, name) for name in SWEPT_PARAMS},
            "tuner_id": runs[f"tags.{TAG_TUNER}"],
        }
    )
    # Confirmed trials first, by their mean (what one seed's luck cannot lift), then the others by best.
    ranked = table.assign(confirmed=table[mean].notna(), score=table[mean].fillna(table[best]))
    ranked = ranked.sort_values(["confirmed", "score"], ascending=[False, objective.endswith("loss")], kind="stable")
    return ranked.drop(columns=["confirmed", "score"]).reset_index(drop=True)


def trial_run_id(client: MlflowClient, experiment: str, sweep_run_id: str, trial_id: str) -> str | None:
    """The FINISHED run of one trial of the sweep."""
    query = (f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and tags.`{TAG_TRIAL}` = '{trial_id}' "
             f"and tags.`{TAG_KIND}` = 'trial' and attributes.status = 'FINISHED'")
    runs = client.search_runs([experiment], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def execution_runs(client: MlflowClient, experiment: str, sweep_run_id: str, *, trial_id: str | None = None,
                   seed: int | None = None, status: str | None = None) -> list[Any]:
    """The sweep's execution runs (search.confirm): all, or one trial's, one seed's, in one status."""
    query = f"tags.`{TAG_SWEEP_RUN}` = '{sweep_run_id}' and tags.`{TAG_KIND}` = '{KIND_EXECUTION}'"
    if trial_id is not None:
        query += f" and tags.`{TAG_TRIAL}` = '{trial_id}'"
    if seed is not None:
        query += f" and params.seed = '{seed}'"
    if status is not None:
        query += f" and attributes.status = '{status}'"
    return client.search_runs([experiment], filter_string=query)


def end_execution_runs(client: MlflowClient, runs: list[Any], reason: str) -> int:
    """End `runs` KILLED with `reason`: executions a dead process left RUNNING, or FINISHED ones it
    never recorded (their execution runs again: one FINISHED run per trial and seed)."""
    for run in runs:
        client.set_tag(run.info.run_id, TAG_FAILURE, reason)
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


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


def find_sweep_runs(
    client: MlflowClient, experiment: str, *, status: str | None = None, oracle: str | None = None, latest_first: str = "start_time"
) -> list[Any]:
    """The sweep runs of an experiment, newest first: all, those in `status`, or those of a chief's `oracle`."""
    query = f"tags.`{TAG_KIND}` = 'sweep'"
    if status:
        query += f" and attributes.status = '{status}'"
    if oracle:
        query += f" and tags.`{TAG_ORACLE}` = '{oracle}'"
    return client.search_runs([experiment], filter_string=query, order_by=[f"attributes.{latest_first} DESC"])


def reference_run(client: MlflowClient, experiment: str, sweep_run_id: str) -> Any | None:
    """The sweep's reference run, if it has one."""
    runs = client.search_runs([experiment], f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and tags.`{TAG_KIND}` = 'reference' "
                                            "and attributes.status = 'FINISHED'", max_results=1)
    return runs[0] if runs else None


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
        client.set_tag(run.info.run_id, TAG_FAILURE, reason)
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
        client.set_tag(run.info.run_id, TAG_FAILURE,
                       "superseded: the trial ran again (its process died before KerasTuner recorded it)")
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(earlier)


def find_run(client: MlflowClient, run_id: str) -> Any | None:
    """The run, deleted or not, or None when the store does not hold it."""
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def state_owner(experiment_name: str, run: Any) -> dict[str, str]:
    """What tuner state records of its sweep run, for `check_state_store` on resume."""
    return {"sweep_run_id": run.info.run_id, "store": redact(tracking_uri()), "experiment": experiment_name,
            "experiment_id": run.info.experiment_id}


def check_state_store(client: MlflowClient, config: SweepConfig, directory: Path, state: dict[str, Any]) -> None:
    """Resume only tuner state whose sweep run this store holds.

    State that belongs to another store (a fresh tracking server, a deleted mlflow.db, a sweep
    run deleted in the UI) would resume as a partial sweep: KerasTuner skips the trials it ran,
    which this store does not hold. Refused before anything is created, with the two ways out.
    """
    run_id = state["sweep_run_id"]
    run = find_run(client, run_id)
    experiment = client.get_experiment_by_name(config.name)
    in_experiment = run is not None and experiment is not None and run.info.experiment_id == experiment.experiment_id
    if in_experiment and run.info.lifecycle_stage != "deleted":
        return
    store, recorded = redact(tracking_uri()), state.get("store")  # older state files lack it
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


def chief_sweep_run(client: MlflowClient, experiment: str, address: str, timeout_s: float = 300) -> str:
    """A worker's sweep run: given by the launcher, or the running sweep run of this chief's oracle."""
    if run_id := os.environ.get("TEXTSWEEP_SWEEP_RUN_ID"):
        return run_id
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = find_sweep_runs(client, experiment, status="RUNNING", oracle=address)
        if runs:
            return runs[0].info.run_id
        time.sleep(2)
    raise TrackingError(
        f"no running sweep run of chief {address} in this experiment after {timeout_s:.0f} s; start the chief "
        "(KERASTUNER_TUNER_ID=chief) with the same sweep file and MLFLOW_TRACKING_URI"
    )


# ---------------------------------------------------------------- why a sweep ended as it did


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def time_budget_reason(client: Any, config: SweepConfig, experiment: str, sweep_run_id: str, finished: int) -> str:
    """Why search.max_time ended the search, with what an epoch and a trial take here (measured
    from the sweep's trial runs), so the next budget can be chosen."""
    reason = (f"search.max_time ({config.search.max_time}) ended the search after {finished} finished "
              f"trial{'' if finished == 1 else 's'}")
    epoch = epoch_seconds(client, experiment, sweep_run_id, config.search.objective)
    if epoch is not None:
        trial = epoch * config.defaults.epochs
        reason += (f"; here an epoch takes about {duration_text(epoch)} and a trial of {config.defaults.epochs} epochs "
                   f"about {duration_text(trial)}" + (", more than the whole budget" if trial > config.search.max_time_seconds else ""))
    return f"{reason}. Rerun the same command with a larger search.max_time to resume (finished trials are kept)"


def no_finished_trial(client: Any, config: SweepConfig, experiment: str, sweep_run_id: str, stop_reason: str | None) -> str:
    """The error of a sweep that ended without a finished trial, naming its cause."""
    failed = count_trial_runs(client, experiment, sweep_run_id, "FAILED")
    if failed:
        cause = (f"its {failed} failed trial run{'s hold' if failed > 1 else ' holds'} failure.txt with the reason. "
                 "Fix the cause, then rerun the same command to resume")
    elif stop_reason:
        cause = stop_reason
    else:
        cause = f"no trial ran. Rerun the same command to resume, or pass {option('restart', True)} to start it afresh"
    return f"sweep {config.name!r} ended with no finished trial: {cause}"
