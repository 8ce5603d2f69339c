"""Promotion: evaluate a sweep's best trial on the test split, register it, gate the alias.

`promote(config)` takes the latest FINISHED sweep run of the sweep file's experiment (or the
one named), picks its best FINISHED trial by `best_<objective>` (lowest for a loss), and:
1. evaluates it on the **test split**, which the search never saw: raw test texts through the
   serving cleaning and vocabulary into the trial's Keras model, giving a class-probability
   matrix for any number of classes. It logs test accuracy, macro-F1, per-class precision and
   recall (`test_precision_<i>`, `test_recall_<i>` for class index i), ROC AUC (binary; one-vs-rest
   macro for more classes) and a confusion matrix to the trial's run; a binary task also gets
   `test_precision`, `test_recall`, `test_f1` (class 1 positive) and a ROC curve;
2. logs the trial as a pyfunc model (serving.py, raw text in) in the trial's run and registers
   it under `config.model_name`, tagged with its sweep run, trial run, trial id, the data's
   fingerprint and its test metrics;
3. gates the alias (`registry.alias`, default `champion`) on `registry.gate_metric`
   (`test_accuracy` or `test_f1_macro`): it moves to the new version only if the version scores
   strictly higher than the champion on the same test split; a tie keeps the champion. A version
   that does not win gets the alias `challenger`.

The same test split: a champion registered from data with the same fingerprint is compared by
its recorded gate metric. A champion from other data (another `data.limit`, seed, source), or
one registered before that metric was recorded, is loaded and re-evaluated on the candidate's
test split, so both are scored on the same rows. Those rows may have been in the champion's own
training data, which can only flatter the champion: the gate errs towards keeping it.

Idempotent: a trial already registered under the model name (version tag
`textsweep.trial_run_id`) is not registered again; the gate is re-applied to that version.
Every check that can fail (no sweep, no finished trial, changed data, a champion that cannot be
loaded) runs before anything is written to the registry. Two promotes at once register one
version per trial and leave one holder per alias (`promotion_lock`, `register_once`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import re
import tempfile
from collections.abc import Iterator, Sequence
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

from textsweep import plots, serving
from textsweep.config import CHALLENGER_ALIAS, SweepConfig
from textsweep.data import PreparedData, load_data
from textsweep.errors import RegistryError, option
from textsweep.tracking.tags import TAG_KIND, TAG_TRIAL
from textsweep.tracking import (
    KERAS_MODEL_NAME,
    TOKENIZER_FILE,
    TOKENIZER_FILES,
    connect,
    find_sweep_runs,
    leaderboard,
    reference_run,
    redact,
    sqlite_path,
    tracking_uri,
)
from textsweep.text import Vocabulary, load_tokenizer

PYFUNC_MODEL_NAME = "classifier"  # the served model, logged beside it in the trial's run
# What evaluation_metrics names (per class: _<class index>); each is also a version tag textsweep.<name>.
TEST_METRIC = re.compile(r"test_(accuracy|f1_macro|precision|recall|f1|roc_auc|precision_\d+|recall_\d+)")
PER_CLASS_METRIC = re.compile(r"test_(precision|recall)_\d+")  # in the run and the tags, not the summary
TAG_SWEEP_RUN = "textsweep.sweep_run_id"
TAG_TRIAL_RUN = "textsweep.trial_run_id"
TAG_FINGERPRINT = "textsweep.data_fingerprint"
TAG_TEST_ROWS = "textsweep.test_rows"
TAG_GATE = "textsweep.gate"
TAG_CHAMPION_SCORE = "textsweep.champion_{metric}"  # the champion's gate metric, re-evaluated on this split


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
    """The version holding the alias, scored on the candidate's test split by the gate metric."""

    version: str
    metric: str  # registry.gate_metric, e.g. test_accuracy
    score: float
    reevaluated: bool  # registered from other data (or without the metric), so loaded and scored on this test split


@dataclass(frozen=True)
class Evaluation:
    """A trial scored on the test split, and what registering it needs."""

    keras_model: Any
    vocabulary_json: str
    probabilities: np.ndarray  # rows x classes
    metrics: dict[str, float]


@dataclass
class PromotionResult:
    """What a promotion did: the version, the alias it holds, and the evaluation behind it."""

    model_name: str
    version: str
    alias: str  # the alias the version holds after promotion: the configured one or `challenger`
    won: bool  # holds the configured alias
    created: bool  # False: the trial was registered before (by this or another promote), no new version
    trial: TrialChoice
    data_fingerprint: str
    test_metrics: dict[str, float]
    test_rows: int
    gate_metric: str  # what the gate compared: registry.gate_metric
    champion: Champion | None  # the alias holder it was compared with (None: there was none)
    gate: str  # why the alias went where it went
    reference_test_accuracy: float | None = None  # the sweep's linear reference, on the same test split

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.alias}"

    def versus_reference(self) -> str:
        if self.reference_test_accuracy is None:
            return "linear reference: none in this sweep (search.reference: false)"
        gap = self.test_metrics["test_accuracy"] - self.reference_test_accuracy
        verdict = f"beats it by {gap:+.4f}" if gap > 0 else f"does not beat it ({gap:+.4f})"
        return (f"linear reference (TF-IDF + logistic regression) test_accuracy {self.reference_test_accuracy:.4f}: "
                f"this model {verdict}")

    def summary(self) -> str:
        metrics = ", ".join(
            f"{name.removeprefix('test_')} {value:.4f}"
            for name, value in self.test_metrics.items()
            if not PER_CLASS_METRIC.fullmatch(name)  # per class: in the trial's run
        )
        registered = "registered as" if self.created else "already registered as"
        return "\n".join(
            [
                f"best trial {self.trial.trial_id} of sweep run {self.trial.sweep_run_id} "
                f"({self.trial.objective} {self.trial.score:.4f}), on {self.test_rows} test rows: {metrics}",
                f"{registered} {self.model_name!r} version {self.version} (trial run {self.trial.run_id})",
                f"alias @{self.alias} (gate: {self.gate_metric}): {self.gate}",
                self.versus_reference(),
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
                f"{option('sweep_run_id', sweep_run_id)}: no such run in {store}; leave it out to take the "
                f"latest finished sweep of experiment {config.name!r}"
            ) from None
        if run.info.experiment_id != experiment.experiment_id or run.data.tags.get(TAG_KIND) != "sweep":
            raise RegistryError(
                f"{option('sweep_run_id', sweep_run_id)} is not a sweep run of experiment {config.name!r} "
                f"(it is a {run.data.tags.get(TAG_KIND, 'non-textsweep')} run); pass the id of the sweep's "
                "parent run, or leave it out to take the latest finished sweep"
            )
        return run
    runs = find_sweep_runs(client, experiment.experiment_id, status="FINISHED", latest_first="end_time")
    if not runs:
        raise RegistryError(
            f"experiment {config.name!r} in {store} has no FINISHED sweep run: nothing to promote. "
            "Run or resume the sweep to its end (textsweep sweep --config <this file>), "
            f"or name an unfinished one with {option('sweep_run_id')}"
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


def prepared_test_data(config: SweepConfig, sweep: Run, data: PreparedData | None = None) -> PreparedData:
    """The sweep file's data (or `data`, prepared from a DataFrame), refused unless the sweep searched it."""
    data = load_data(config.data) if data is None else data
    searched = sweep.data.params.get("data_fingerprint")
    if searched != data.fingerprint:
        raise RegistryError(
            f"sweep run {sweep.info.run_id} searched data with fingerprint {searched}, but the "
            f"data given ({data.source!r}) now gives {data.fingerprint}: its test split is not the "
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
            f"it cannot be promoted. Re-run the sweep with {option('restart', True)}, or pass another {option('sweep_run_id')}"
        )
    from textsweep.layers import keep_legacy_lstms_off_cudnn  # also registers RightPaddedRNN for loading

    return keep_legacy_lstms_off_cudnn(mlflow.tensorflow.load_model(f"models:/{models[0].model_id}"))


def trial_vocabulary(trial: TrialChoice) -> str:
    """The trial's tokenizer JSON (word vocabulary or subword pieces): capped at its max_features, with its maxlen."""
    try:
        # Runs from before the subword tokenizer have no `tokenizer` param: they are word runs.
        kind = mlflow.get_run(trial.run_id).data.params.get("tokenizer", "word")
        path = TOKENIZER_FILES.get(kind, TOKENIZER_FILE)
        return mlflow.artifacts.load_text(f"runs:/{trial.run_id}/{path}")
    except (MlflowException, OSError):
        raise RegistryError(
            f"trial run {trial.run_id} (trial {trial.trial_id}) has no tokenizer artifact under tokenizer/; it cannot "
            f"be promoted. Re-run the sweep with {option('restart', True)}, or pass another {option('sweep_run_id')}"
        ) from None


def metric_tag(name: str) -> str:
    """The version tag holding a test metric, e.g. `textsweep.test_accuracy`."""
    return f"textsweep.{name}"


def recorded_metrics(version: ModelVersion, gate_metric: str) -> dict[str, float]:
    """The test metrics a version was registered with (its `textsweep.test_*` tags)."""
    metrics = {
        name: float(value)
        for key, value in version.tags.items()
        if key.startswith("textsweep.") and TEST_METRIC.fullmatch(name := key.removeprefix("textsweep."))
    }
    if gate_metric not in metrics:
        raise RegistryError(
            f"version {version.version} of {version.name!r} is registered for this trial but has no "
            f"{metric_tag(gate_metric)} tag (registered before textsweep recorded it); gate on another "
            "registry.gate_metric, or delete that version and promote again"
        )
    return metrics


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """The most probable class of each row; binary: 1 when P(1) > 0.5, as serving and Keras decide."""
    return np.argmax(probabilities, axis=1)  # a 0.5/0.5 tie goes to class 0, as P(1) > 0.5 does


def evaluation_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Test metrics from true class indices and the class-probability matrix (rows x classes).

    Any number of classes: `test_accuracy`, `test_f1_macro`, `test_precision_<i>` and
    `test_recall_<i>` for class index i, and `test_roc_auc` (one-vs-rest, macro-averaged, for more
    than two classes). Binary also keeps `test_precision`, `test_recall`, `test_f1` with class 1
    positive, and its ROC AUC is P(1)'s.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

    classes = list(range(probabilities.shape[1]))
    predicted = predicted_classes(probabilities)
    precision, recall, _, _ = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    metrics = {
        "test_accuracy": accuracy_score(labels, predicted),
        "test_f1_macro": f1_score(labels, predicted, labels=classes, average="macro", zero_division=0),
    }
    if len(classes) == 2:
        metrics |= {
            "test_precision": precision[1],
            "test_recall": recall[1],
            "test_f1": f1_score(labels, predicted, zero_division=0),
        }
    metrics |= {f"test_precision_{i}": precision[i] for i in classes}
    metrics |= {f"test_recall_{i}": recall[i] for i in classes}
    if set(np.unique(labels)) == set(classes):  # stratified splits hold every class; AUC needs them all
        metrics["test_roc_auc"] = (
            roc_auc_score(labels, probabilities[:, 1])
            if len(classes) == 2
            else roc_auc_score(labels, probabilities, multi_class="ovr", average="macro", labels=classes)
        )
    return {name: float(value) for name, value in metrics.items()}


def gate_score(metric: str, labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """`registry.gate_metric` from labels alone: what a champion's served `label` column allows."""
    from sklearn.metrics import accuracy_score, f1_score

    if metric == "test_f1_macro":
        return float(f1_score(labels, predicted, labels=list(range(classes)), average="macro", zero_division=0))
    return float(accuracy_score(labels, predicted))


def confusion_matrix_figure(labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[Any], title: str) -> Any:
    """An n x n confusion matrix, rows the true classes, ticks the class names."""
    # plots.confusion_matrix draws classes 0 and 1 only; this one belongs there once plots.py takes n classes.
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.5, 0.6 * len(class_names) + 2)
    figure = Figure(figsize=(size, size - 0.5), layout="constrained")
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=list(range(len(class_names))), display_labels=[str(c) for c in class_names],
        cmap="Blues", colorbar=False, xticks_rotation="vertical" if len(class_names) > 4 else "horizontal",
        ax=figure.subplots(),
    )
    figure.axes[0].set_title(title)
    return figure


def evaluate_trial(trial: TrialChoice, data: PreparedData) -> Evaluation:
    """The trial's Keras model and vocabulary, scored on the raw test texts as they will be served."""
    keras_model = trial_keras_model(trial)
    vocabulary_json = trial_vocabulary(trial)
    # Raw test texts through the serving code: what is measured is what will be served.
    probabilities = serving.class_probabilities(keras_model, load_tokenizer(vocabulary_json), data.test.texts)
    return Evaluation(keras_model, vocabulary_json, probabilities, evaluation_metrics(data.test.labels, probabilities))


def champion_on_split(
    client: MlflowClient, model_name: str, version: str, data: PreparedData, metric: str
) -> Champion:
    """The alias holder's gate metric on `data`'s test split: recorded if the split is the same."""
    holder = client.get_model_version(model_name, version)
    recorded = holder.tags.get(metric_tag(metric))
    if holder.tags.get(TAG_FINGERPRINT) == data.fingerprint and recorded is not None:
        return Champion(version, metric, float(recorded), reevaluated=False)
    uri = f"models:/{model_name}/{version}"
    try:
        predictions = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": data.test.texts}))
        # The served label is the user's own value: back to class indices, as `data.test.labels` holds
        predicted = pd.Index(list(data.classes)).get_indexer(list(predictions["label"]))
        score = gate_score(metric, data.test.labels, predicted, len(data.classes))
    except Exception as exc:  # any model can hold the alias; say which one cannot be compared
        raise RegistryError(
            f"the current champion {uri} was registered from other data and cannot be re-evaluated on "
            f"this test split ({type(exc).__name__}: {str(exc)[:300]}); nothing was registered. Move the "
            f"alias to a textsweep version or delete it (MlflowClient().delete_registered_model_alias("
            f"{model_name!r}, alias)), then promote again"
        ) from None
    return Champion(version, metric, score, reevaluated=True)


def gate_outcome(metric: str, candidate: float, champion: Champion | None) -> tuple[bool, str]:
    """Whether the candidate takes the alias, and why: a strictly higher `metric` on the same split."""
    if champion is None:
        return True, f"{metric} {candidate:.4f}; no version held the alias before"
    where = "re-evaluated on this test split" if champion.reevaluated else "same test split"
    comparison = f"{metric} {candidate:.4f} vs {champion.score:.4f} of version {champion.version} ({where})"
    if candidate > champion.score:
        return True, f"beats the champion: {comparison}"
    return False, f"does not beat the champion: {comparison}"


# ---------------------------------------------------------------- registration


def log_pyfunc_model(keras_model: Any, vocabulary_json: str, workdir: Path) -> Any:
    """Log the trial as the served pyfunc model (serving.py, from code) in the trial's run."""
    import textsweep

    keras_path = workdir / "model.keras"
    keras_model.save(keras_path)
    tokenizer = load_tokenizer(vocabulary_json)
    # A word vocabulary keeps the artifact name every earlier version has; subword pieces get their own.
    artifact = serving.VOCABULARY_ARTIFACT if isinstance(tokenizer, Vocabulary) else serving.SUBWORD_ARTIFACT
    tokenizer_path = workdir / f"{artifact}.json"
    tokenizer_path.write_text(vocabulary_json, encoding="utf-8")
    return mlflow.pyfunc.log_model(
        name=PYFUNC_MODEL_NAME,
        python_model=serving.__file__,  # a model from code: MLflow runs the file, nothing is pickled
        code_paths=[str(Path(textsweep.__file__).parent)],  # the cleaning and tokenizers it imports
        artifacts={artifact: str(tokenizer_path), serving.KERAS_MODEL_ARTIFACT: str(keras_path)},
        signature=serving.signature(tokenizer.classes),
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
    client: MlflowClient, config: SweepConfig, trial: TrialChoice, data: PreparedData, evaluation: Evaluation
) -> ModelVersion:
    """Log the test evaluation and the pyfunc model to the trial's run, then register a version."""
    labels, probabilities, metrics = data.test.labels, evaluation.probabilities, evaluation.metrics
    title = f"trial {trial.trial_id}: test split ({len(labels)} rows)"
    figures = {"test_confusion_matrix.png": confusion_matrix_figure(labels, predicted_classes(probabilities), data.classes, title)}
    if probabilities.shape[1] == 2:
        figures["test_roc_curve.png"] = plots.roc_curve(labels, probabilities[:, 1], title)
    trained_until = client.get_run(trial.run_id).info.end_time
    with tempfile.TemporaryDirectory() as workdir, mlflow.start_run(run_id=trial.run_id):
        mlflow.log_metrics(metrics)
        for artifact, figure in figures.items():
            mlflow.log_figure(figure, artifact, save_kwargs={"dpi": 80})
        model_info = log_pyfunc_model(evaluation.keras_model, evaluation.vocabulary_json, Path(workdir))
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
            f"test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_f1_macro']:.4f} "
            f"on {len(labels)} rows of data {data.fingerprint}."
        ),
    )


# Two promotes at once must leave one version per trial and one holder per alias; without care
# both find the trial unregistered, both register it, and the later gate puts @challenger on the
# champion's own trial. Two layers:
# - The registry itself is the referee, so this holds for a tracking server that other hosts
#   share: `register_once` re-reads the trial's versions after creating one and keeps the oldest,
#   deleting its own duplicate (the store numbers versions in commit order, so every racer keeps
#   the same one); `register_and_gate` re-reads the alias holder after registering and leaves a
#   version that already holds the alias alone; alias moves are idempotent. MLflow has no
#   compare-and-set on aliases, so on a server two *different* trials promoted at the same instant
#   can both be compared with the same old champion, and the alias ends on the last writer's.
# - On a local SQLite store (the default) `promotion_lock` runs promotions one at a time, so the
#   second finds the first's version and gate, exactly as if run after it. fcntl.flock is
#   released by the OS when the process ends, however it ends: a crash never leaves the store
#   locked. A file lock means nothing to a server reached from several hosts, hence the first layer.


@contextlib.contextmanager
def promotion_lock(uri: str) -> Iterator[None]:
    """One promotion at a time on a local SQLite store (a lock file beside it); no lock for other stores."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with (database.parent / f".{database.name}.promote.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes or the process dies
        yield


def register_once(
    client: MlflowClient, config: SweepConfig, trial: TrialChoice, data: PreparedData, evaluation: Evaluation
) -> tuple[ModelVersion, bool]:
    """The trial's one version, and whether this call created it (False: another promote did)."""
    earlier = registered_version(client, config.model_name, trial.run_id)
    if earlier is not None:  # registered by another promote while this one evaluated
        return earlier, False
    mine = log_and_register(client, config, trial, data, evaluation)
    first = registered_version(client, config.model_name, trial.run_id)  # the oldest, ours included
    if first is not None and str(first.version) != str(mine.version):
        client.delete_model_version(config.model_name, mine.version)
        if mine.model_id:  # the duplicate's pyfunc model in the trial's run
            client.delete_logged_model(mine.model_id)
        return first, False
    return mine, True


def apply_gate(
    client: MlflowClient, model_name: str, version: str, alias: str, won: bool, gate: str, champion: Champion | None
) -> str:
    """Point `alias` (or `challenger`) at the version and record why; returns the alias it holds.

    A new champion stops being the challenger, and a version that holds the alias (another
    promote just gave it) never also becomes the challenger.
    """
    if won:
        client.set_registered_model_alias(model_name, alias, version)
        if alias_holder(client, model_name, CHALLENGER_ALIAS) == version:
            client.delete_registered_model_alias(model_name, CHALLENGER_ALIAS)
        held = alias
    elif alias_holder(client, model_name, alias) == version:
        return alias
    else:
        client.set_registered_model_alias(model_name, CHALLENGER_ALIAS, version)
        held = CHALLENGER_ALIAS
    client.set_model_version_tag(model_name, version, TAG_GATE, f"@{held}: {gate}")
    if champion is not None and champion.reevaluated:
        client.set_model_version_tag(model_name, version, TAG_CHAMPION_SCORE.format(metric=champion.metric), f"{champion.score:.6g}")
    return held


def promote(config: SweepConfig, sweep_run_id: str | None = None, data: PreparedData | None = None) -> PromotionResult:
    """Evaluate the sweep's best trial on the test split, register it, and gate the alias.

    `data`: the sweep's data prepared from a DataFrame (jobs.promote), instead of `data.source`.
    """
    client = connect(create=False)  # an empty folder has nothing to promote: no store is created there
    sweep = find_sweep_run(client, config, sweep_run_id)
    trial = best_trial(client, sweep, config.search.objective)
    data = prepared_test_data(config, sweep, data)
    with promotion_lock(tracking_uri()):
        result = register_and_gate(client, config, trial, data)
    reference = reference_run(client, sweep.info.experiment_id, sweep.info.run_id)
    if reference is not None:
        result = dataclasses.replace(result, reference_test_accuracy=reference.data.metrics.get("test_accuracy"))
    return result


def register_and_gate(client: MlflowClient, config: SweepConfig, trial: TrialChoice, data: PreparedData) -> PromotionResult:
    """Register the trial once (or find it registered) and gate the alias on `registry.gate_metric`."""
    model_name, alias, metric = config.model_name, config.registry.alias, config.registry.gate_metric
    existing = registered_version(client, model_name, trial.run_id)
    # Promoted before: reuse its recorded evaluation. Otherwise score it as it will be served.
    evaluation = evaluate_trial(trial, data) if existing is None else None
    metrics = evaluation.metrics if evaluation is not None else recorded_metrics(existing, metric)
    holder = alias_holder(client, model_name, alias)
    checked = None if existing is None else str(existing.version)
    champion = champion_on_split(client, model_name, holder, data, metric) if holder not in (None, checked) else None

    # Everything that can fail has run; only now is the registry written to.
    if existing is None:
        registered, created = register_once(client, config, trial, data, evaluation)
    else:
        registered, created = existing, False
    version = str(registered.version)
    if (now := alias_holder(client, model_name, alias)) != holder:  # another promote moved it meanwhile
        holder = now
        champion = champion_on_split(client, model_name, holder, data, metric) if holder not in (None, version) else None
    if holder == version:
        champion, held, gate = None, alias, "already held by this version; nothing changed"
    else:
        won, gate = gate_outcome(metric, metrics[metric], champion)
        held = apply_gate(client, model_name, version, alias, won, gate, champion)
    return PromotionResult(
        model_name=model_name,
        version=version,
        alias=held,
        won=held == alias,
        created=created,
        trial=trial,
        data_fingerprint=data.fingerprint,
        test_metrics=metrics,
        test_rows=len(data.test.texts),
        gate_metric=metric,
        champion=champion,
        gate=gate,
    )


# ---------------------------------------------------------------- using a registered model


def load_classifier(model_uri: str) -> Any:
    """A registered (or any) textsweep pyfunc model, e.g. `models:/uz-sentiment@champion`."""
    if model_uri.startswith(("models:", "runs:")):  # read from the store, which must exist; a path needs none
        connect(create=False)
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
