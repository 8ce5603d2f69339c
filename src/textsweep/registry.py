"""Promotion: evaluate a sweep's best trial on the test split, register it, gate the alias.

`promote(config)` takes the latest FINISHED sweep run of the sweep file's experiment (or the
one named), picks its best FINISHED trial by `best_<objective>` (lowest for a loss), and:
1. evaluates it on the **test split**, which the search never saw, through the same code that
   serves it (serving.classify: raw text -> cleaning -> vocabulary -> Keras model), and logs
   test accuracy, precision, recall, F1, ROC AUC, a confusion matrix and a ROC curve to the
   trial's run;
2. logs the trial as a pyfunc model (serving.py, raw text in) in the trial's run and registers
   it under `config.model_name`, tagged with its sweep run, trial run, trial id, the data's
   fingerprint and its test metrics;
3. gates the alias (`registry.alias`, default `champion`): it moves to the new version only if
   the version's test accuracy is strictly higher than the champion's on the same test split; a
   tie keeps the champion. A version that does not win gets the alias `challenger`.

The same test split: a champion registered from data with the same fingerprint is compared by
its recorded test accuracy. A champion from other data (another `data.limit`, seed, source) is
loaded and re-evaluated on the candidate's test split, so both are scored on the same rows.
Those rows may have been in the champion's own training data, which can only flatter the
champion: the gate errs towards keeping it.

Idempotent: a trial already registered under the model name (version tag
`textsweep.trial_run_id`) is not registered again; the gate is re-applied to that version.
Every check that can fail (no sweep, no finished trial, changed data, a champion that cannot be
loaded) runs before anything is written to the registry.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from textsweep import plots
from textsweep.config import CHALLENGER_ALIAS, SweepConfig
from textsweep.data import PreparedData, load_data
from textsweep.errors import RegistryError
from textsweep.tracking import (
    KERAS_MODEL_NAME,
    TAG_KIND,
    TAG_TRIAL,
    TOKENIZER_FILE,
    connect,
    leaderboard,
    redact,
    tracking_uri,
)
from textsweep.vocab import Vocabulary

PYFUNC_MODEL_NAME = "classifier"  # the served model, logged beside it in the trial's run
TEST_METRICS = ("test_accuracy", "test_precision", "test_recall", "test_f1", "test_roc_auc")
TAG_SWEEP_RUN = "textsweep.sweep_run_id"
TAG_TRIAL_RUN = "textsweep.trial_run_id"
TAG_FINGERPRINT = "textsweep.data_fingerprint"
TAG_TEST_ROWS = "textsweep.test_rows"
TAG_GATE = "textsweep.gate"
TAG_CHAMPION_ACCURACY = "textsweep.champion_test_accuracy"  # the champion's, re-evaluated on this split


@dataclass(frozen=True)
class TrialChoice:
    """The sweep's best finished trial."""

    sweep_run_id: str
    experiment_id: str
    run_id: str
    trial_id: str
    objective: str
    score: float


@dataclass(frozen=True)
class Champion:
    """The version holding the alias, scored on the candidate's test split."""

    version: str
    test_accuracy: float
    reevaluated: bool  # registered from other data, so loaded and scored on this test split


@dataclass
class PromotionResult:
    """What a promotion did: the version, the alias it holds, and the evaluation behind it."""

    model_name: str
    version: str
    alias: str  # the alias the version holds after promotion: the configured one or `challenger`
    won: bool  # holds the configured alias
    created: bool  # False: the trial was registered before, no new version
    trial: TrialChoice
    data_fingerprint: str
    test_metrics: dict[str, float]
    test_rows: int
    champion: Champion | None  # the alias holder it was compared with (None: there was none)
    gate: str  # why the alias went where it went

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.alias}"

    def summary(self) -> str:
        metrics = ", ".join(f"{name.removeprefix('test_')} {value:.4f}" for name, value in self.test_metrics.items())
        registered = "registered as" if self.created else "already registered as"
        return "\n".join(
            [
                f"best trial {self.trial.trial_id} of sweep run {self.trial.sweep_run_id} "
                f"({self.trial.objective} {self.trial.score:.4f}), on {self.test_rows} test rows: {metrics}",
                f"{registered} {self.model_name!r} version {self.version} (trial run {self.trial.run_id})",
                f"alias @{self.alias}: {self.gate}",
                f"serve: mlflow models serve -m {self.model_uri} --env-manager local --host 127.0.0.1 -p 5001",
                f'try:   textsweep predict --model {self.model_uri} "some text"',
            ]
        )


# ---------------------------------------------------------------- what to promote


def find_sweep_run(client: MlflowClient, config: SweepConfig, sweep_run_id: str | None = None) -> Run:
    """The named sweep run, or the latest FINISHED sweep run of the sweep file's experiment."""
    store = redact(tracking_uri())
    experiment = client.get_experiment_by_name(config.name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise RegistryError(
            f"no MLflow experiment {config.name!r} in {store}: nothing to promote. Run the sweep first "
            f"(textsweep sweep --config <this file>), from the directory that holds its store, "
            "or set MLFLOW_TRACKING_URI to the store it used"
        )
    if sweep_run_id is not None:
        try:
            run = client.get_run(sweep_run_id)
        except MlflowException:
            raise RegistryError(
                f"--sweep-run-id {sweep_run_id!r}: no such run in {store}; leave it out to take the "
                f"latest finished sweep of experiment {config.name!r}"
            ) from None
        if run.info.experiment_id != experiment.experiment_id or run.data.tags.get(TAG_KIND) != "sweep":
            raise RegistryError(
                f"--sweep-run-id {sweep_run_id!r} is not a sweep run of experiment {config.name!r} "
                f"(it is a {run.data.tags.get(TAG_KIND, 'non-textsweep')} run); pass the id of the sweep's "
                "parent run, or leave it out to take the latest finished sweep"
            )
        return run
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'sweep' and attributes.status = 'FINISHED'",
        order_by=["attributes.end_time DESC"],
        max_results=1,
    )
    if not runs:
        raise RegistryError(
            f"experiment {config.name!r} in {store} has no FINISHED sweep run: nothing to promote. "
            "Run or resume the sweep to its end (textsweep sweep --config <this file>), "
            "or name an unfinished one with --sweep-run-id"
        )
    return runs[0]


def best_trial(client: MlflowClient, sweep: Run, default_objective: str) -> TrialChoice:
    """The sweep's best FINISHED trial by `best_<objective>`, the objective the sweep searched."""
    objective = sweep.data.params.get("objective", default_objective)
    table = leaderboard(client, sweep.info.experiment_id, sweep.info.run_id, objective)
    score = f"best_{objective}"
    table = table.dropna(subset=[score]) if not table.empty else table
    if table.empty:
        raise RegistryError(
            f"sweep run {sweep.info.run_id} has no FINISHED trial with a {score} metric: nothing to "
            "promote. Resume the sweep (textsweep sweep --config <this file>) until a trial finishes"
        )
    best = table.iloc[0]
    return TrialChoice(
        sweep.info.run_id, sweep.info.experiment_id, best["run_id"], str(best["trial_id"]), objective, float(best[score])
    )


def prepared_test_data(config: SweepConfig, sweep: Run) -> PreparedData:
    """The sweep file's data, refused unless it is the data the sweep searched (same fingerprint)."""
    data = load_data(config.data)
    searched = sweep.data.params.get("data_fingerprint")
    if searched != data.fingerprint:
        raise RegistryError(
            f"sweep run {sweep.info.run_id} searched data with fingerprint {searched}, but the sweep "
            f"file's data ({config.data.source!r}) now gives {data.fingerprint}: its test split is not the "
            "one the search never saw. Promote with the sweep file the sweep ran with (the run's "
            "sweep.yaml artifact holds it), or run the sweep again on this data"
        )
    return data


def registered_version(client: MlflowClient, model_name: str, trial_run_id: str) -> ModelVersion | None:
    """The version of `model_name` registered from this trial run, if any."""
    versions = client.search_model_versions(f"name = '{model_name}' and tags.`{TAG_TRIAL_RUN}` = '{trial_run_id}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def alias_holder(client: MlflowClient, model_name: str, alias: str) -> str | None:
    """The version number holding `alias`, as a string, or None."""
    try:
        version = client.get_registered_model(model_name).aliases.get(alias)
        return None if version is None else str(version)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise


# ---------------------------------------------------------------- evaluation


def trial_keras_model(trial: TrialChoice) -> Any:
    """The Keras model the trial logged (its best epoch's weights)."""
    models = mlflow.search_logged_models(
        experiment_ids=[trial.experiment_id],
        filter_string=f"source_run_id = '{trial.run_id}' AND name = '{KERAS_MODEL_NAME}'",
        output_format="list",
    )
    if not models:
        raise RegistryError(
            f"trial run {trial.run_id} (trial {trial.trial_id}) has no logged Keras model {KERAS_MODEL_NAME!r}; "
            "it cannot be promoted. Re-run the sweep with --restart, or pass another --sweep-run-id"
        )
    return mlflow.tensorflow.load_model(f"models:/{models[0].model_id}")


def trial_vocabulary(trial: TrialChoice) -> str:
    """The trial's vocabulary JSON: capped at its max_features, with its maxlen."""
    try:
        return mlflow.artifacts.load_text(f"runs:/{trial.run_id}/{TOKENIZER_FILE}")
    except (MlflowException, OSError):
        raise RegistryError(
            f"trial run {trial.run_id} (trial {trial.trial_id}) has no {TOKENIZER_FILE} artifact; it cannot "
            "be promoted. Re-run the sweep with --restart, or pass another --sweep-run-id"
        ) from None


def metric_tag(name: str) -> str:
    """The version tag holding a test metric, e.g. `textsweep.test_accuracy`."""
    return f"textsweep.{name}"


def recorded_metrics(version: ModelVersion) -> dict[str, float]:
    """The test metrics a version was registered with (its tags)."""
    metrics = {name: float(version.tags[metric_tag(name)]) for name in TEST_METRICS if metric_tag(name) in version.tags}
    if "test_accuracy" not in metrics:
        raise RegistryError(
            f"version {version.version} of {version.name!r} is registered for this trial but has no "
            "textsweep.test_accuracy tag; delete that version, then promote again"
        )
    return metrics


def evaluation_metrics(labels: np.ndarray, predictions: pd.DataFrame) -> dict[str, float]:
    """Test accuracy, precision, recall, F1 (class 1 positive) and ROC AUC of `classify`'s output."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    predicted, probability = predictions["label"].to_numpy(), predictions["probability"].to_numpy()
    metrics = {
        "test_accuracy": accuracy_score(labels, predicted),
        "test_precision": precision_score(labels, predicted, zero_division=0),
        "test_recall": recall_score(labels, predicted, zero_division=0),
        "test_f1": f1_score(labels, predicted, zero_division=0),
    }
    if len(np.unique(labels)) == 2:  # stratified splits always hold both classes
        metrics["test_roc_auc"] = roc_auc_score(labels, probability)
    return {name: float(value) for name, value in metrics.items()}


def champion_on_split(
    client: MlflowClient, model_name: str, version: str, data: PreparedData
) -> Champion:
    """The alias holder's test accuracy on `data`'s test split: recorded if the split is the same."""
    holder = client.get_model_version(model_name, version)
    recorded = holder.tags.get(metric_tag("test_accuracy"))
    if holder.tags.get(TAG_FINGERPRINT) == data.fingerprint and recorded is not None:
        return Champion(version, float(recorded), reevaluated=False)
    uri = f"models:/{model_name}/{version}"
    try:
        predictions = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": data.test.texts}))
        accuracy = float(np.mean(np.asarray(predictions["label"]) == data.test.labels))
    except Exception as exc:  # any model can hold the alias; say which one cannot be compared
        raise RegistryError(
            f"the current champion {uri} was registered from other data and cannot be re-evaluated on "
            f"this test split ({type(exc).__name__}: {str(exc)[:300]}); nothing was registered. Move the "
            f"alias to a textsweep version or delete it (MlflowClient().delete_registered_model_alias("
            f"{model_name!r}, alias)), then promote again"
        ) from None
    return Champion(version, accuracy, reevaluated=True)


def gate_outcome(candidate_accuracy: float, champion: Champion | None) -> tuple[bool, str]:
    """Whether the candidate takes the alias, and why: strictly higher test accuracy on the same split."""
    if champion is None:
        return True, f"test accuracy {candidate_accuracy:.4f}; no version held the alias before"
    where = "re-evaluated on this test split" if champion.reevaluated else "same test split"
    comparison = f"test accuracy {candidate_accuracy:.4f} vs {champion.test_accuracy:.4f} of version {champion.version} ({where})"
    if candidate_accuracy > champion.test_accuracy:
        return True, f"beats the champion: {comparison}"
    return False, f"does not beat the champion: {comparison}"


# ---------------------------------------------------------------- registration


def log_pyfunc_model(keras_model: Any, vocabulary_json: str, workdir: Path) -> Any:
    """Log the trial as the served pyfunc model (serving.py, from code) in the trial's run."""
    import textsweep
    from textsweep import serving

    keras_path = workdir / "model.keras"
    keras_model.save(keras_path)
    vocabulary_path = workdir / "vocabulary.json"
    vocabulary_path.write_text(vocabulary_json, encoding="utf-8")
    return mlflow.pyfunc.log_model(
        name=PYFUNC_MODEL_NAME,
        python_model=serving.__file__,  # a model from code: MLflow runs the file, nothing is pickled
        code_paths=[str(Path(textsweep.__file__).parent)],  # the cleaning and vocabulary it imports
        artifacts={serving.VOCABULARY_ARTIFACT: str(vocabulary_path), serving.KERAS_MODEL_ARTIFACT: str(keras_path)},
        signature=serving.SIGNATURE,
        input_example=serving.INPUT_EXAMPLE,
        pip_requirements=serving.pip_requirements(),
    )


def version_tags(trial: TrialChoice, data: PreparedData, metrics: dict[str, float]) -> dict[str, str]:
    return {
        TAG_SWEEP_RUN: trial.sweep_run_id,
        TAG_TRIAL_RUN: trial.run_id,
        TAG_TRIAL: trial.trial_id,
        TAG_FINGERPRINT: data.fingerprint,
        TAG_TEST_ROWS: str(len(data.test.texts)),
        f"textsweep.best_{trial.objective}": f"{trial.score:.6g}",
    } | {metric_tag(name): f"{value:.6g}" for name, value in metrics.items()}


def log_and_register(
    client: MlflowClient,
    config: SweepConfig,
    trial: TrialChoice,
    data: PreparedData,
    keras_model: Any,
    vocabulary_json: str,
    predictions: pd.DataFrame,
    metrics: dict[str, float],
) -> ModelVersion:
    """Log the test evaluation and the pyfunc model to the trial's run, then register a version."""
    labels = data.test.labels
    title = f"trial {trial.trial_id}: test split ({len(labels)} rows)"
    trained_until = client.get_run(trial.run_id).info.end_time
    with tempfile.TemporaryDirectory() as workdir, mlflow.start_run(run_id=trial.run_id):
        mlflow.log_metrics(metrics)
        for figure, artifact in (
            (plots.confusion_matrix(labels, predictions["label"].to_numpy(), title), "test_confusion_matrix.png"),
            (plots.roc_curve(labels, predictions["probability"].to_numpy(), title), "test_roc_curve.png"),
        ):
            mlflow.log_figure(figure, artifact, save_kwargs={"dpi": 80})
        model_info = log_pyfunc_model(keras_model, vocabulary_json, Path(workdir))
    # Reopening the run moved its end to now; keep the trial's own duration in the UI.
    client.set_terminated(trial.run_id, "FINISHED", end_time=trained_until)
    try:
        client.create_registered_model(config.model_name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    return client.create_model_version(
        config.model_name,
        source=model_info.model_uri,
        run_id=trial.run_id,
        model_id=model_info.model_id,
        tags=version_tags(trial, data, metrics),
        description=(
            f"Trial {trial.trial_id} of sweep run {trial.sweep_run_id} (experiment {config.name!r}): "
            f"test accuracy {metrics['test_accuracy']:.4f} on {len(labels)} rows of data {data.fingerprint}."
        ),
    )


def apply_gate(
    client: MlflowClient, model_name: str, version: str, alias: str, gate: str, champion: Champion | None
) -> None:
    """Point `alias` at the version and record on it why; a new champion stops being the challenger."""
    client.set_registered_model_alias(model_name, alias, version)
    if alias != CHALLENGER_ALIAS and alias_holder(client, model_name, CHALLENGER_ALIAS) == version:
        client.delete_registered_model_alias(model_name, CHALLENGER_ALIAS)
    client.set_model_version_tag(model_name, version, TAG_GATE, f"@{alias}: {gate}")
    if champion is not None and champion.reevaluated:
        client.set_model_version_tag(model_name, version, TAG_CHAMPION_ACCURACY, f"{champion.test_accuracy:.6g}")


def promote(config: SweepConfig, sweep_run_id: str | None = None) -> PromotionResult:
    """Evaluate the sweep's best trial on the test split, register it, and gate the alias."""
    from textsweep.serving import classify

    alias = config.registry.alias
    client = connect()
    sweep = find_sweep_run(client, config, sweep_run_id)
    trial = best_trial(client, sweep, config.search.objective)
    data = prepared_test_data(config, sweep)
    model_name = config.model_name
    existing = registered_version(client, model_name, trial.run_id)

    if existing is not None:  # promoted before: reuse its evaluation, register nothing new
        metrics = recorded_metrics(existing)
        keras_model = vocabulary_json = predictions = None
    else:
        keras_model = trial_keras_model(trial)
        vocabulary_json = trial_vocabulary(trial)
        # Raw test texts through the serving code: what is measured is what will be served.
        predictions = classify(keras_model, Vocabulary.from_json(vocabulary_json), data.test.texts)
        metrics = evaluation_metrics(data.test.labels, predictions)

    holder = alias_holder(client, model_name, alias)
    unchanged = existing is not None and holder == str(existing.version)
    if unchanged:
        champion, won, gate = None, True, "already held by this version; nothing changed"
    else:
        champion = champion_on_split(client, model_name, holder, data) if holder is not None else None
        won, gate = gate_outcome(metrics["test_accuracy"], champion)

    # Everything that can fail has run; only now is the registry written to.
    if existing is None:
        version = str(log_and_register(client, config, trial, data, keras_model, vocabulary_json, predictions, metrics).version)
    else:
        version = str(existing.version)
    if not unchanged:
        apply_gate(client, model_name, version, alias if won else CHALLENGER_ALIAS, gate, champion)
    return PromotionResult(
        model_name=model_name,
        version=version,
        alias=alias if won else CHALLENGER_ALIAS,
        won=won,
        created=existing is None,
        trial=trial,
        data_fingerprint=data.fingerprint,
        test_metrics=metrics,
        test_rows=len(data.test.texts),
        champion=champion,
        gate=gate,
    )


# ---------------------------------------------------------------- using a registered model


def load_classifier(model_uri: str) -> Any:
    """A registered (or any) textsweep pyfunc model, e.g. `models:/uz-sentiment@champion`."""
    connect()
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        message = str(getattr(exc, "message", exc)).rstrip(".")
        raise RegistryError(
            f"cannot load model {model_uri!r} from {redact(tracking_uri())}: {message}. Check the name and "
            "alias (textsweep promote registers models:/<registry.model_name>@<registry.alias>) and that "
            "you run from the directory holding the store, or set MLFLOW_TRACKING_URI"
        ) from None


def predict_texts(model_uri: str, texts: list[str]) -> pd.DataFrame:
    """Label and positive-class probability of each raw text, by a registered model."""
    predictions = load_classifier(model_uri).predict(pd.DataFrame({"text": list(texts)}))
    return pd.DataFrame({"text": list(texts), "label": predictions["label"], "probability": predictions["probability"]})
