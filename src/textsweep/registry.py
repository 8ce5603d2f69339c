"""Promotion: choose the sweep's best model, register it once, gate the alias.

`promote_if_better(config)` takes the latest FINISHED sweep run of the sweep file's experiment (or
the one named) and its best FINISHED trial (by the mean over seeds where search.confirm ran, else
by `best_<objective>`). candidates.py scores that trial, the sweep's linear reference and their
blend on the validation split and chooses among those `registry.candidates` allows; every
candidate is then scored on the **test split**, which nothing was chosen on, and logged to its
run. The chosen one is logged as the served pyfunc model (serving.py, raw text in) and registered
under `config.model_name`, tagged with its kind, sweep run, source run, data fingerprint and test
metrics; the alias (`registry.alias`) moves to it only if it scores strictly higher on
`registry.gate_metric` than the champion on the same test split (a tie keeps the champion; a
loser gets `challenger`). A champion from other data (another fingerprint), or one without that
metric recorded, is loaded and re-evaluated on the candidate's test split; those rows may have
trained it, which can only flatter the champion: the gate errs towards keeping it.

Idempotent: a candidate already registered (version tag `textsweep.trial_run_id` for a trial,
`textsweep.candidate_run_id` for the others) is not registered again; the gate is re-applied.
Every check that can fail runs before the registry is written to.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass, field

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from textsweep.candidates import (
    Candidate, TrialChoice, log_evaluation, log_served_model, score_candidates, trial_parts, validation_metric,
)
from textsweep.config import CHALLENGER_ALIAS, SweepConfig
from textsweep.data import PreparedData, load_data
from textsweep.errors import RegistryError, option
from textsweep.evaluation import PER_CLASS_METRIC, TEST_METRIC, gate_score
from textsweep.reference import versus_reference
from textsweep.tracking import (
    connect, find_run, find_sweep_runs, leaderboard, redact,
    reference_run, sqlite_path, tracking_uri,
)
from textsweep.tracking.tags import (
    TAG_CANDIDATE, TAG_CANDIDATE_RUN, TAG_CHAMPION_SCORE, TAG_FINGERPRINT, TAG_GATE, TAG_KIND, TAG_LSTM_WEIGHT,
    TAG_SWEEP_RUN, TAG_TEST_ROWS, TAG_TRIAL, TAG_TRIAL_RUN, metric_tag,
)


@dataclass(frozen=True)
class Champion:
    """The version holding the alias, scored on the candidate's test split by the gate metric."""

    version: str
    metric: str  # registry.gate_metric, e.g. test_accuracy
    score: float
    reevaluated: bool  # registered from other data (or without the metric), so loaded and scored on this test split


@dataclass
class PromotionResult:
    """What a promotion did: the candidate chosen, the version, the alias it holds, and the evaluation behind it."""

    model_name: str
    version: str
    alias: str  # the alias the version holds after promotion: the configured one or `challenger`
    won: bool  # holds the configured alias
    created: bool  # False: the candidate was registered before (by this or another promote), no new version
    trial: TrialChoice
    data_fingerprint: str
    test_metrics: dict[str, float]  # the chosen candidate's
    test_rows: int
    gate_metric: str  # what the gate compared: registry.gate_metric
    champion: Champion | None  # the alias holder it was compared with (None: there was none)
    gate: str  # why the alias went where it went
    chosen: str = "lstm"  # the registered candidate's kind: lstm, reference or blend
    candidates: list[CandidateScore] = field(default_factory=list)  # every candidate scored, best on validation first
    val_rows: int = 0
    reference: dict[str, float] | None = None  # the sweep's linear reference's metrics (search.reference)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.alias}"

    def summary(self) -> str:
        metrics = ", ".join(
            f"{name.removeprefix('test_')} {value:.4f}"
            for name, value in self.test_metrics.items()
            if not PER_CLASS_METRIC.fullmatch(name)  # per class: in the candidate's run
        )
        registered = "registered as" if self.created else "already registered as"
        chosen = next((c for c in self.candidates if c.kind == self.chosen), None)
        return "\n".join(
            [
                *self.choice_lines(),
                f"{chosen.name if chosen else 'best trial ' + self.trial.trial_id} (sweep run {self.trial.sweep_run_id}), "
                f"on {self.test_rows} test rows: {metrics}",
                f"{registered} {self.model_name!r} version {self.version} ({self.chosen}, run {chosen.run_id if chosen else self.trial.run_id})",
                f"alias @{self.alias} (gate: {self.gate_metric}): {self.gate}",
                *self.reference_line(),
                f"serve: mlflow models serve -m {self.model_uri} --env-manager local --host 127.0.0.1 -p 5001",
                f'try:   textsweep predict --model {self.model_uri} "some text"',
            ]
        )

    def reference_line(self) -> list[str]:
        """The linear reference beside the registered model, where it was not a candidate itself."""
        if any(c.kind == "reference" for c in self.candidates):
            return []
        return [versus_reference(self.reference, self.test_metrics["test_accuracy"], split="test", model="this model")]

    def choice_lines(self) -> list[str]:
        """The candidates as a small table, and which won by how much on validation."""
        if not self.candidates:
            return []
        metric = validation_metric(self.gate_metric)
        width, scores = max(len(c.name) for c in self.candidates), max(len(c.validation) for c in self.candidates)
        lines = [f"candidates, chosen on {self.val_rows} validation rows by {metric}; "
                 f"test ({self.test_rows} rows) shown, never used to choose:"]
        for candidate in self.candidates:
            mark = "  <- chosen" if candidate.kind == self.chosen else ""
            lines.append(f"  {candidate.name:<{width}}  {candidate.validation:<{scores}}  "
                         f"test_accuracy {candidate.test_accuracy:.4f}{mark}")
        if len(self.candidates) > 1:
            first, second = self.candidates[0], self.candidates[1]
            lines.append(f"chosen: {first.kind}, {first.score - second.score:+.4f} on validation over {second.kind}"
                         + (" (a tie goes to the simpler kind)" if first.score == second.score else ""))
        else:
            lines.append(f"chosen: {self.candidates[0].kind}, the only candidate (registry.candidates)")
        return lines


@dataclass(frozen=True)
class CandidateScore:
    """One candidate as the summary shows it."""

    kind: str
    name: str
    run_id: str
    score: float  # what the choice compared
    validation: str  # e.g. "val_accuracy 0.8612 ± 0.0030 over 3 seeds"
    test_accuracy: float

    @classmethod
    def of(cls, candidate: Candidate, gate_metric: str) -> CandidateScore:
        return cls(candidate.kind, candidate.name, candidate.run_id, candidate.choice_score,
                   candidate.validation_text(validation_metric(gate_metric)), candidate.test_metrics["test_accuracy"])


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
    best = table.iloc[0]  # the leaderboard puts trials confirmed over seeds first, by their mean
    mean = best.get(f"mean_{objective}")
    confirmed = mean is not None and not pd.isna(mean)
    return TrialChoice(
        sweep.info.run_id, sweep.info.experiment_id, best["run_id"], str(best["trial_id"]), objective, float(best[score]),
        mean=float(mean) if confirmed else None,
        std=float(best[f"std_{objective}"]) if confirmed else None,
        seeds=int(best["seeds"]) if confirmed and "seeds" in best and not pd.isna(best["seeds"]) else 1,
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


def registered_version(client: MlflowClient, model_name: str, run_id: str, kind: str = "lstm") -> ModelVersion | None:
    """The version of `model_name` registered from this candidate's run, if any (a trial's: its trial run)."""
    tag = TAG_TRIAL_RUN if kind == "lstm" else TAG_CANDIDATE_RUN
    versions = client.search_model_versions(f"name = '{model_name}' and tags.`{tag}` = '{run_id}'")
    if kind == "lstm":  # a blend's version names its trial too, under another tag; only the trial's own count
        versions = [v for v in versions if v.tags.get(TAG_CANDIDATE, "lstm") == "lstm"]
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


def version_tags(trial: TrialChoice, candidate: Candidate, data: PreparedData) -> dict[str, str]:
    source = {TAG_TRIAL_RUN: trial.run_id, TAG_TRIAL: trial.trial_id} if candidate.kind == "lstm" else {TAG_CANDIDATE_RUN: candidate.run_id}
    if candidate.kind == "blend":
        source |= {TAG_TRIAL: trial.trial_id, TAG_LSTM_WEIGHT: f"{candidate.lstm_weight:.1f}"}
    return {
        TAG_CANDIDATE: candidate.kind,
        TAG_SWEEP_RUN: trial.sweep_run_id,
        **source,
        TAG_FINGERPRINT: data.fingerprint,
        TAG_TEST_ROWS: str(len(data.test.texts)),
        f"textsweep.best_{trial.objective}": f"{trial.score:.6g}",
    } | {metric_tag(name): f"{value:.6g}" for name, value in candidate.test_metrics.items()}


def version_subject(trial: TrialChoice, candidate: Candidate) -> str:
    """What a version is, as its description opens: `Trial 3`, `The linear reference`, `A blend of ...`."""
    if candidate.kind == "lstm":
        return f"Trial {trial.trial_id}"
    if candidate.kind == "reference":
        return "The linear reference (TF-IDF word+char n-grams, logistic regression)"
    return f"A blend of trial {trial.trial_id} ({candidate.lstm_weight:.1f}) and the linear reference ({1 - candidate.lstm_weight:.1f})"


def log_and_register(
    client: MlflowClient, config: SweepConfig, trial: TrialChoice, data: PreparedData, candidate: Candidate
) -> ModelVersion:
    """Log the candidate as the served pyfunc model in its run, then register a version."""
    model_info = log_served_model(candidate, data)
    try:
        client.create_registered_model(config.model_name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    metrics = candidate.test_metrics
    return client.create_model_version(
        config.model_name, source=model_info.model_uri, run_id=candidate.run_id, model_id=model_info.model_id,
        tags=version_tags(trial, candidate, data),
        description=(
            f"{version_subject(trial, candidate)} of sweep run {trial.sweep_run_id} (experiment "
            f"{config.name!r}): test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_f1_macro']:.4f} "
            f"on {len(data.test.labels)} rows of data {data.fingerprint}."
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
    client: MlflowClient, config: SweepConfig, trial: TrialChoice, data: PreparedData, candidate: Candidate
) -> tuple[ModelVersion, bool]:
    """The candidate's one version, and whether this call created it (False: another promote did)."""
    earlier = registered_version(client, config.model_name, candidate.run_id, candidate.kind)
    if earlier is not None:  # registered by another promote while this one evaluated
        return earlier, False
    mine = log_and_register(client, config, trial, data, candidate)
    first = registered_version(client, config.model_name, candidate.run_id, candidate.kind)  # the oldest, ours included
    if first is not None and str(first.version) != str(mine.version):
        client.delete_model_version(config.model_name, mine.version)
        if mine.model_id:  # the duplicate's pyfunc model in the candidate's run
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
    """Choose among the sweep's candidates on validation, score them all on test, register the chosen one
    once, and give it the alias if it beats the champion (`challenger` if not).

    `data`: the sweep's data prepared from a DataFrame (api.promote), instead of `data.source`.
    """
    client = connect(create=False)  # an empty folder has nothing to promote: no store is created there
    sweep = find_sweep_run(client, config, sweep_run_id)
    trial = best_trial(client, sweep, config.search.objective)
    data = prepared_test_data(config, sweep, data)
    gate_metric, allowed = config.registry.gate_metric, config.registry.candidates
    parts = trial_parts(trial, gate_metric) if {"lstm", "blend"} & set(allowed) else None
    reference = reference_run(client, sweep.info.experiment_id, sweep.info.run_id)
    with promotion_lock(tracking_uri()):  # the blend's run is found or made under it: one per trial and weight
        candidates = score_candidates(client, allowed, gate_metric, sweep, parts, reference, data)
        for candidate in candidates:
            log_evaluation(client, candidate, data, gate_metric)
        result = register_and_gate(client, config, trial, data, candidates[0])
    result.candidates = [CandidateScore.of(c, gate_metric) for c in candidates]
    result.val_rows = len(data.val.labels)
    result.reference = None if reference is None else dict(reference.data.metrics)
    return result


def register_and_gate(
    client: MlflowClient, config: SweepConfig, trial: TrialChoice, data: PreparedData, candidate: Candidate
) -> PromotionResult:
    """Register the candidate once (or find it registered) and gate the alias on `registry.gate_metric`."""
    model_name, alias, metric = config.model_name, config.registry.alias, config.registry.gate_metric
    existing = registered_version(client, model_name, candidate.run_id, candidate.kind)
    metrics = candidate.test_metrics
    holder = alias_holder(client, model_name, alias)
    checked = None if existing is None else str(existing.version)
    champion = champion_on_split(client, model_name, holder, data, metric) if holder not in (None, checked) else None

    # Everything that can fail has run; only now is the registry written to.
    if existing is None:
        registered, created = register_once(client, config, trial, data, candidate)
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
        champion=champion, gate=gate, chosen=candidate.kind,
    )
