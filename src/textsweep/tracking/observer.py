"""The trial observer: each trial of the search a nested MLflow run under the sweep run.

The search hands it trial events (textsweep.events); it never sees the tuner. Per trial a
nested run (`mlflow.parentRunId`, tags `textsweep.trial_id`, `textsweep.tuner_id`) with every
training param, per-epoch metrics (step = epoch, from 0), `best_<objective>`, the tokenizer, the
Keras model at its best epoch, `learning_curves.png`, device tags and MLflow system metrics; a
failed trial's run ends FAILED with `failure.txt` and a one-line reason.

Confirmation (search.confirm) adds, per further execution of a top trial, a run nested under the
trial's run (tag `textsweep.kind=execution`, params `seed` and `trial_id`, per-epoch metrics and
`best_<objective>`; no model: the trial's own stays the one registered), and on the trial's run
`mean_<objective>`, `std_<objective>` and `seeds`. The sweep run stays MLflow's active run
meanwhile, so these runs are written through the client.
"""

from __future__ import annotations

import time

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from textsweep.events import (
    ConfirmationEnd, ConfirmationStart, EpochEnd, ExecutionEnd, ExecutionEpochEnd, ExecutionStart, TrialConfirmed,
    TrialEnd, TrialObserver, TrialStart, WorkerLost,
)
from textsweep.text import EncodedSplits
from textsweep.tracking.artifacts import log_keras_model, log_learning_curves, log_vocabulary
from textsweep.tracking.queries import (
    end_execution_runs, execution_runs, kill_running_trial_runs, supersede_earlier_runs, trial_run_id,
)
from textsweep.tracking.runs import environment_tags, log_params
from textsweep.tracking.tags import (
    KIND_EXECUTION, MEAN_METRIC, SEEDS_METRIC, STD_METRIC, TAG_CONFIRMATION, TAG_FAILURE, TAG_KIND, TAG_PARENT,
    TAG_SWEEP_RUN, TAG_TRIAL, TAG_TUNER,
)


class MlflowTrialObserver(TrialObserver):
    """Logs every trial of one sweep run; `encoded` is the sweep's data, encoded once, and
    `objective` the metric whose best value each trial run records as `best_<objective>`."""

    def __init__(self, client: MlflowClient, experiment_id: str, sweep_run_id: str, encoded: EncodedSplits,
                 objective: str):
        self.client = client
        self.objective = objective
        self.experiment_id = experiment_id
        self.sweep_run_id = sweep_run_id
        self.encoded = encoded
        self.histories: dict[str, dict[str, list[float]]] = {}  # trial id -> per-epoch logs, for its curves
        self.execution_run_ids: dict[tuple[str, int], str] = {}  # (trial id, seed) -> its running run

    def trial_begins(self, trial: TrialStart) -> None:
        supersede_earlier_runs(self.client, self.experiment_id, self.sweep_run_id, trial.trial_id)
        mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=f"trial-{trial.trial_id}",
            nested=True,
            parent_run_id=self.sweep_run_id,
            log_system_metrics=True,
            tags={TAG_TRIAL: trial.trial_id, TAG_TUNER: trial.tuner_id, TAG_KIND: "trial", **environment_tags()},
        )
        log_params(trial.params, self.encoded.maxlen_for(trial.params), self.encoded, trial.values.get("max_features"))
        bookkeeping = {k: v for k, v in trial.values.items() if k.startswith("tuner/")}
        if bookkeeping:  # Hyperband's brackets
            mlflow.log_params({k.replace("/", "_"): v for k, v in bookkeeping.items()})
        self.histories[trial.trial_id] = {}

    def epoch_ends(self, event: EpochEnd) -> None:
        mlflow.log_metrics(event.logs, step=event.epoch)
        history = self.histories.setdefault(event.trial.trial_id, {})
        for name, value in event.logs.items():
            history.setdefault(name, []).append(value)

    def trial_ends(self, event: TrialEnd) -> None:
        finished = event.status == "COMPLETED"
        history = self.histories.pop(event.trial.trial_id, {})
        try:
            if finished:
                self._log_outcome(event, history)
            else:
                mlflow.set_tag(TAG_FAILURE, event.reason[:500])
                mlflow.log_text(event.message or event.status, "failure.txt")
        finally:
            mlflow.end_run("FINISHED" if finished else "FAILED")

    def _log_outcome(self, event: TrialEnd, history: dict[str, list[float]]) -> None:
        trial = event.trial
        if event.score is not None:
            mlflow.log_metric(f"best_{self.objective}", event.score)
        maxlen = self.encoded.maxlen_for(trial.params)
        log_vocabulary(self.encoded, trial.params, maxlen)
        log_learning_curves(history, f"trial {trial.trial_id}")
        if event.model is not None:
            log_keras_model(event.model)

    def worker_lost(self, event: WorkerLost) -> None:
        """On the chief: the lost worker's running trial run ends KILLED (its trial runs again elsewhere)."""
        kill_running_trial_runs(self.client, self.experiment_id, self.sweep_run_id,
                                f"{event.reason} during this trial", event.tuner_id)

    # ------------------------------------------------------------ confirmation (search.confirm)

    def confirmation_begins(self, event: ConfirmationStart) -> None:
        """Executions a dead process left RUNNING end KILLED: they run again now."""
        stale = execution_runs(self.client, self.experiment_id, self.sweep_run_id, status="RUNNING")
        end_execution_runs(self.client, stale, "interrupted: the sweep process died; run again on resume")

    def execution_begins(self, execution: ExecutionStart) -> None:
        trial_id, seed = execution.trial_id, execution.seed
        # A process that died after this run ended but before the search recorded it: run again, one FINISHED run kept.
        earlier = execution_runs(self.client, self.experiment_id, self.sweep_run_id, trial_id=trial_id, seed=seed,
                                 status="FINISHED")
        end_execution_runs(self.client, earlier, "superseded: the execution ran again (its process died before "
                                                 "the search recorded it)")
        parent = trial_run_id(self.client, self.experiment_id, self.sweep_run_id, trial_id)
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{trial_id}-seed-{seed}",
            tags={TAG_PARENT: parent or self.sweep_run_id, TAG_KIND: KIND_EXECUTION, TAG_TRIAL: trial_id,
                  TAG_TUNER: execution.trial.tuner_id, TAG_SWEEP_RUN: self.sweep_run_id, **environment_tags()},
        )
        self.client.log_batch(run.info.run_id, params=[Param("seed", str(seed)), Param("trial_id", trial_id)])
        self.execution_run_ids[(trial_id, seed)] = run.info.run_id

    def execution_epoch_ends(self, event: ExecutionEpochEnd) -> None:
        run_id = self.execution_run_ids[(event.execution.trial_id, event.execution.seed)]
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(name, value, now, event.epoch) for name, value in event.logs.items()])

    def execution_ends(self, event: ExecutionEnd) -> None:
        run_id = self.execution_run_ids.pop((event.execution.trial_id, event.execution.seed))
        if event.status == "COMPLETED":
            self.client.log_metric(run_id, f"best_{self.objective}", event.score)
            self.client.set_terminated(run_id, status="FINISHED")
            return
        self.client.set_tag(run_id, TAG_FAILURE, (event.message or event.status).strip().splitlines()[-1][:500])
        if event.status == "FAILED":
            self.client.log_text(run_id, event.message or event.status, "failure.txt")
        self.client.set_terminated(run_id, status="FAILED" if event.status == "FAILED" else "KILLED")

    def trial_confirmed(self, event: TrialConfirmed) -> None:
        run_id = trial_run_id(self.client, self.experiment_id, self.sweep_run_id, event.trial_id)
        if run_id is None:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[
            Metric(MEAN_METRIC.format(objective=self.objective), event.mean, now, 0),
            Metric(STD_METRIC.format(objective=self.objective), event.std, now, 0),
            Metric(SEEDS_METRIC, len(event.scores), now, 0),
        ])

    def confirmation_ends(self, event: ConfirmationEnd) -> None:
        state = "ended early by search.max_time" if event.stopped_by_time else "complete"
        self.client.set_tag(self.sweep_run_id, TAG_CONFIRMATION,
                            f"{state}: {event.executions_done} of {event.executions_planned} further executions, "
                            f"{len(event.confirmed)} trials ranked by mean_{self.objective}")
