"""The trial observer: each trial of the search a nested MLflow run under the sweep run.

The search hands it trial events (textsweep.events); it never sees the tuner. Per trial a
nested run (`mlflow.parentRunId`, tags `textsweep.trial_id`, `textsweep.tuner_id`) with every
training param, per-epoch metrics (step = epoch, from 0), `best_<objective>`, the tokenizer, the
Keras model at its best epoch, `learning_curves.png`, device tags and MLflow system metrics; a
failed trial's run ends FAILED with `failure.txt` and a one-line reason.
"""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from textsweep.events import EpochEnd, TrialEnd, TrialObserver, TrialStart, WorkerLost
from textsweep.text import EncodedSplits
from textsweep.tracking.artifacts import log_keras_model, log_learning_curves, log_vocabulary
from textsweep.tracking.queries import kill_running_trial_runs, supersede_earlier_runs
from textsweep.tracking.runs import environment_tags, log_params
from textsweep.tracking.tags import TAG_FAILURE, TAG_KIND, TAG_TRIAL, TAG_TUNER


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
