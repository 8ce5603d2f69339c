"""Promotion: choose a sweep's best trial, register it once, gate the alias.

`promote_if_better(config)` takes the latest FINISHED sweep run of the sweep file's experiment (or
the one named) and its best FINISHED trial by `best_<objective>`; scores it on the **test split**,
which the search never saw (evaluation.py), logging metrics and figures to the trial's run; logs
it as the served pyfunc model (serving.py, raw text in) and registers it under
`config.model_name`, tagged with its sweep run, trial, data fingerprint and test metrics; then
moves the alias (`registry.alias`) to it only if it scores strictly higher on
`registry.gate_metric` than the champion on the same test split (a tie keeps the champion; a
loser gets `challenger`). A champion from other data (another fingerprint), or one without that
metric recorded, is loaded and re-evaluated on the candidate's test split; those rows may have
trained it, which can only flatter the champion: the gate errs towards keeping it.

Idempotent: a trial already registered (version tag `textsweep.trial_run_id`) is not registered
again; the gate is re-applied. Every check that can fail runs before the registry is written to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from textsweep import serving
from textsweep.config import CHALLENGER_ALIAS, SweepConfig
from textsweep.data import PreparedData, load_data
from textsweep.errors import RegistryError, option
from textsweep.evaluation import PER_CLASS_METRIC, TEST_METRIC, Evaluation, evaluate, evaluation_figures, gate_score
from textsweep.reference import versus_reference
from textsweep.tracking import (
    KERAS_MODEL_NAME, TOKENIZER_FILE, TOKENIZER_FILES, connect, find_run, find_sweep_runs, leaderboard, redact,
    reference_run, sqlite_path, tracking_uri,
)
from textsweep.text import Vocabulary, load_tokenizer
from textsweep.tracking.tags import (
    TAG_CHAMPION_SCORE, TAG_FINGERPRINT, TAG_GATE, TAG_KIND, TAG_SWEEP_RUN, TAG_TEST_ROWS, TAG_TRIAL, TAG_TRIAL_RUN,
    metric_tag,
)

PYFUNC_MODEL_NAME = "classifier"  # the served model, logged beside it in the trial's run


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
    reference: dict[str, float] | None = None  # the sweep's linear reference's metrics (search.reference)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.alias}"

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
                versus_reference(self.reference, self.test_metrics["test_accuracy"], split="test", model="this model"),
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
        run = find_run(client, sweep_run_id)  # any other MLflow error (the store, the server) is raised as it is
        if run is None:
            raise RegistryError(
                f"{option('sweep_run_id', sweep_run_id)}: no such run in {store}; leave it out to take the "
                f"latest finished sweep of experiment {config.name!r}"
            )
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


# ---------------------------------------------------------------- the trial's model, and the gate


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
    # Runs from before the subword tokenizer have no `tokenizer` param: they are word runs.
    kind = mlflow.get_run(trial.run_id).data.params.get("tokenizer", "word")
    path = TOKENIZER_FILES.get(kind, TOKENIZER_FILE)
    try:
        return mlflow.artifacts.load_text(f"runs:/{trial.run_id}/{path}")
    except MlflowException as exc:
        # A runs:/ download that finds nothing says RESOURCE_DOES_NOT_EXIST; other errors are not "no artifact".
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        raise RegistryError(
            f"trial run {trial.run_id} (trial {trial.trial_id}) has no tokenizer artifact under tokenizer/; it cannot "
            f"be promoted. Re-run the sweep with {option('restart', True)}, or pass another {option('sweep_run_id')}"
        ) from None


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


def log_pyfunc_model(keras_model: Any, tokenizer_json: str, workdir: Path) -> Any:
    """Log the trial as the served pyfunc model (serving.py, from code) in the trial's run."""
    import textsweep

    keras_path = workdir / "model.keras"
    keras_model.save(keras_path)
    tokenizer = load_tokenizer(tokenizer_json)
    # A word vocabulary keeps the artifact name every earlier version has; subword pieces get their own.
    artifact = serving.VOCABULARY_ARTIFACT if isinstance(tokenizer, Vocabulary) else serving.SUBWORD_ARTIFACT
    tokenizer_path = workdir / f"{artifact}.json"
    tokenizer_path.write_text(tokenizer_json, encoding="utf-8")
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
    labels, metrics = data.test.labels, evaluation.metrics
    title = f"trial {trial.trial_id}: test split ({len(labels)} rows)"
    figures = evaluation_figures(labels, evaluation.probabilities, data.classes, title)
    trained_until = client.get_run(trial.run_id).info.end_time
    with tempfile.TemporaryDirectory() as workdir, mlflow.start_run(run_id=trial.run_id):
        mlflow.log_metrics(metrics)
        for artifact, figure in figures.items():
            mlflow.log_figure(figure, artifact, save_kwargs={"dpi": 80})
        model_info = log_pyfunc_model(evaluation.keras_model, evaluation.tokenizer_json, Path(workdir))
    # Reopening the run moved its end to now; keep the trial's own duration in the UI.
    client.set_terminated(trial.run_id, "FINISHED", end_time=trained_until)
    try:
        client.create_registered_model(config.model_name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    return client.create_model_version(
        config.model_name, source=model_info.model_uri, run_id=trial.run_id, model_id=model_info.model_id,
        tags=version_tags(trial, data, metrics),
        description=(
            f"Trial {trial.trial_id} of sweep run {trial.sweep_run_id} (experiment {config.name!r}): "
            f"test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_f1_macro']:.4f} "
            f"on {len(labels)} rows of data {data.fingerprint}."
        ),
    )


# Two promotes at once must leave one version per trial and one holder per alias (else both
# register the trial, and the later gate puts @challenger on the champion's own trial). Two layers:
# - The registry is the referee, which holds on a shared tracking server: `register_once` keeps the
#   trial's oldest version and deletes its own duplicate (versions are numbered in commit order,
#   so every racer keeps the same one); `register_and_gate` re-reads the alias holder after
#   registering and leaves a version that already holds the alias alone. MLflow has no
#   compare-and-set on aliases: two *different* trials promoted at the same instant on a server
#   may both be compared with the old champion, and the last writer's alias stays.
# - On a local SQLite store (the default) `promotion_lock` runs promotions one at a time, so the
#   second sees the first's version and gate. The OS releases fcntl.flock when the process ends,
#   however it ends; a file lock means nothing to a server reached from several hosts.


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


def promote_if_better(config: SweepConfig, sweep_run_id: str | None = None, data: PreparedData | None = None) -> PromotionResult:
    """Evaluate the sweep's best trial on the test split, register it once, and give it the alias if it
    beats the champion (`challenger` if not).

    `data`: the sweep's data prepared from a DataFrame (api.promote), instead of `data.source`.
    """
    client = connect(create=False)  # an empty folder has nothing to promote: no store is created there
    sweep = find_sweep_run(client, config, sweep_run_id)
    trial = best_trial(client, sweep, config.search.objective)
    data = prepared_test_data(config, sweep, data)
    with promotion_lock(tracking_uri()):
        result = register_and_gate(client, config, trial, data)
    reference = reference_run(client, sweep.info.experiment_id, sweep.info.run_id)
    return result if reference is None else dataclasses.replace(result, reference=dict(reference.data.metrics))


def register_and_gate(client: MlflowClient, config: SweepConfig, trial: TrialChoice, data: PreparedData) -> PromotionResult:
    """Register the trial once (or find it registered) and gate the alias on `registry.gate_metric`."""
    model_name, alias, metric = config.model_name, config.registry.alias, config.registry.gate_metric
    existing = registered_version(client, model_name, trial.run_id)
    # Promoted before: reuse its recorded evaluation. Otherwise score it as it will be served.
    evaluation = evaluate(trial_keras_model(trial), trial_vocabulary(trial), data) if existing is None else None
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
        model_name=model_name, version=version, alias=held, won=held == alias, created=created, trial=trial,
        data_fingerprint=data.fingerprint, test_metrics=metrics, test_rows=len(data.test.texts), gate_metric=metric,
        champion=champion, gate=gate,
    )
