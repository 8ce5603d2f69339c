"""What a promotion chooses among: the sweep's best trial, its linear reference, and their blend.

A sweep's best trial is not always its best model: on the Uzbek reviews the linear reference beats
every LSTM the search found, and averaging the two beats both (BENCHMARKS.md). So promote scores
each kind the sweep file allows (`registry.candidates`) on the **validation split**, through the
code that will serve it (serving.blended_probabilities), and chooses the best there. The test
split, which nothing was chosen on, is then scored for every candidate and logged to its run with
MLflow's own classifier evaluation; registry.py registers the chosen one and gates the alias.

- `lstm`: the best trial (registry.best_trial: by the mean over seeds where search.confirm ran).
  Where seeds ran, it competes with its mean validation score, the estimate one lucky seed cannot
  inflate; its run is the trial's.
- `reference`: refitted on the training split (lbfgs has no random state: the same split gives the
  same model, in seconds) and checked against what the sweep logged; its run is the sweep's
  reference run.
- `blend`: `w * lstm + (1 - w) * reference`, `w` chosen on validation (evaluation.blend_weight);
  a nested run of the sweep (TAG_KIND `blend`) holds it.
A tie goes to the simpler kind: reference, then lstm, then blend.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from textsweep import serving
from textsweep.data import PreparedData
from textsweep.errors import RegistryError, option
from textsweep.evaluation import blend_weight, evaluation_figures, evaluation_metrics, predicted_classes, validation_score
from textsweep.reference import fit_reference, save_reference
from textsweep.text import Vocabulary, load_tokenizer
from textsweep.tracking import KERAS_MODEL_NAME, TOKENIZER_FILE, TOKENIZER_FILES
from textsweep.tracking.tags import TAG_KIND, TAG_PARENT, TAG_TRIAL, TAG_TRIAL_RUN

KINDS = ("reference", "lstm", "blend")  # simplest first: a tie goes to the earlier
BLEND_WEIGHT_PARAM = "lstm_weight"


@dataclass
class Candidate:
    """One model promote may register, scored as it will be served."""

    kind: str  # lstm, reference or blend
    run_id: str  # the run its evaluation is logged to and its served model is logged in
    name: str  # what the summary calls it
    lstm_weight: float  # 1: the trial alone, 0: the reference alone
    val_score: float  # the validation metric of the model as served
    val_probabilities: np.ndarray
    test_probabilities: np.ndarray
    keras_model: Any = None
    tokenizer_json: str | None = None
    reference: Any = None  # the fitted scikit-learn pipeline
    val_mean: float | None = None  # lstm with search.confirm: the mean over its seeds
    val_std: float | None = None
    seeds: int = 1
    test_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def choice_score(self) -> float:
        """What the choice compares: the mean over seeds where there is one, else the served model's score."""
        return self.val_score if self.val_mean is None else self.val_mean

    def validation_text(self, metric: str) -> str:
        spread = f" ± {self.val_std:.4f} over {self.seeds} seeds" if self.val_mean is not None else ""
        return f"{metric} {self.choice_score:.4f}{spread}"


@dataclass(frozen=True)
class TrialChoice:
    """The sweep's best finished trial."""

    sweep_run_id: str
    experiment_id: str
    run_id: str
    trial_id: str
    objective: str
    score: float
    # With search.confirm: the objective's mean and spread over the trial's seeds, and how many.
    mean: float | None = None
    std: float | None = None
    seeds: int = 1


@dataclass(frozen=True)
class TrialParts:
    """The best trial as registry.py found it: its run, id, Keras model and tokenizer."""

    run_id: str
    trial_id: str
    keras_model: Any
    tokenizer_json: str
    val_mean: float | None = None
    val_std: float | None = None
    seeds: int = 1


def trial_parts(trial: TrialChoice, gate_metric: str) -> TrialParts:
    """The trial's model and tokenizer; its mean over seeds counts where it is of the validation metric."""
    comparable = trial.mean is not None and trial.objective == validation_metric(gate_metric)
    return TrialParts(
        trial.run_id, trial.trial_id, trial_keras_model(trial), trial_vocabulary(trial),
        val_mean=trial.mean if comparable else None, val_std=trial.std if comparable else None,
        seeds=trial.seeds if comparable else 1,
    )


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


def validation_metric(gate_metric: str) -> str:
    """The validation twin of registry.gate_metric: `val_accuracy` for `test_accuracy`."""
    return "val_" + gate_metric.removeprefix("test_")


def score_candidates(client: MlflowClient, allowed: list[str], gate_metric: str, sweep: Run, trial: TrialParts | None,
                     reference_run: Run | None, data: PreparedData) -> list[Candidate]:
    """Every allowed candidate the sweep has, scored on validation and test, best by validation first.

    Nothing is registered (a blend's run is found or created); a sweep without a reference run
    simply has no `reference` or `blend`.
    """
    available = [kind for kind in allowed if kind == "lstm" or reference_run is not None]
    if not available:
        raise RegistryError(
            f"registry.candidates {allowed} needs the sweep's linear reference, but sweep run {sweep.info.run_id} "
            "has none (search.reference: false); add lstm to registry.candidates, or run the sweep with "
            f"{option('search.reference', True)}"
        )
    candidates: dict[str, Candidate] = {}
    if trial is not None and ("lstm" in available or "blend" in available):
        candidates["lstm"] = lstm_candidate(trial, data, gate_metric)
    if reference_run is not None and ("reference" in available or "blend" in available):
        candidates["reference"] = reference_candidate(reference_run, data, gate_metric)
    if "blend" in available and {"lstm", "reference"} <= candidates.keys():
        candidates["blend"] = blend_candidate(client, sweep, candidates["lstm"], candidates["reference"], trial, data, gate_metric)
    chosen = [candidates[kind] for kind in KINDS if kind in candidates and kind in available]
    for candidate in chosen:
        candidate.test_metrics = evaluation_metrics(data.test.labels, candidate.test_probabilities)
    # Stable sort: equal scores keep KINDS' order, so a tie goes to the simpler kind.
    return sorted(chosen, key=lambda c: -c.choice_score)


def lstm_candidate(trial: TrialParts, data: PreparedData, gate_metric: str) -> Candidate:
    tokenizer = load_tokenizer(trial.tokenizer_json)
    val, test = (serving.class_probabilities(trial.keras_model, tokenizer, split.texts) for split in (data.val, data.test))
    return Candidate(
        "lstm", trial.run_id, f"lstm (trial {trial.trial_id})", 1.0, validation_score(gate_metric, data.val.labels, val),
        val, test, keras_model=trial.keras_model, tokenizer_json=trial.tokenizer_json,
        val_mean=trial.val_mean, val_std=trial.val_std, seeds=trial.seeds,
    )


def reference_candidate(run: Run, data: PreparedData, gate_metric: str) -> Candidate:
    fitted = fit_reference(data)
    logged = run.data.metrics.get("val_accuracy")
    if logged is not None and not math.isclose(logged, fitted.val_accuracy, abs_tol=1e-9):
        raise RegistryError(
            f"the linear reference refitted on this training split scores val_accuracy {fitted.val_accuracy:.4f}, "
            f"but the sweep's reference run {run.info.run_id} logged {logged:.4f}: it is not the model the sweep "
            "measured (another scikit-learn version?). Promote with the environment the sweep ran in, or leave "
            "reference and blend out of registry.candidates"
        )
    pipeline = fitted.pipeline
    probabilities = [serving.blended_probabilities(split.texts, reference=pipeline, cleaning=data.cleaning,
                                                   lstm_weight=0.0, classes=len(data.classes)) for split in (data.val, data.test)]
    score = validation_score(gate_metric, data.val.labels, probabilities[0])
    return Candidate("reference", run.info.run_id, "reference (TF-IDF word+char n-grams, logistic regression)", 0.0,
                     score, *probabilities, reference=pipeline)


def blend_candidate(client: MlflowClient, sweep: Run, lstm: Candidate, reference: Candidate, trial: TrialParts,
                    data: PreparedData, gate_metric: str) -> Candidate:
    weight = blend_weight(data.val.labels, lstm.val_probabilities, reference.val_probabilities)
    val, test = (weight * a + (1 - weight) * b for a, b in (
        (lstm.val_probabilities, reference.val_probabilities), (lstm.test_probabilities, reference.test_probabilities)))
    run_id = blend_run(client, sweep, trial, weight)
    return Candidate(
        "blend", run_id, f"blend ({weight:.1f} x trial {trial.trial_id} + {1 - weight:.1f} x reference)", weight,
        validation_score(gate_metric, data.val.labels, val), val, test,
        keras_model=lstm.keras_model, tokenizer_json=lstm.tokenizer_json, reference=reference.reference,
    )


def blend_run(client: MlflowClient, sweep: Run, trial: TrialParts, weight: float) -> str:
    """The sweep's nested run for this trial's blend at this weight: found, or created FINISHED."""
    found = client.search_runs(
        [sweep.info.experiment_id],
        f"tags.`{TAG_PARENT}` = '{sweep.info.run_id}' and tags.`{TAG_KIND}` = 'blend' "
        f"and tags.`{TAG_TRIAL_RUN}` = '{trial.run_id}' and params.{BLEND_WEIGHT_PARAM} = '{weight}'",
        max_results=1, order_by=["attributes.start_time ASC"],
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        sweep.info.experiment_id, run_name=f"blend-trial-{trial.trial_id}-reference",
        tags={TAG_PARENT: sweep.info.run_id, TAG_KIND: "blend", TAG_TRIAL_RUN: trial.run_id, TAG_TRIAL: trial.trial_id},
    )
    client.log_param(run.info.run_id, BLEND_WEIGHT_PARAM, weight)
    client.log_param(run.info.run_id, "trial_id", trial.trial_id)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


# ---------------------------------------------------------------- logging (each to its own run)


def log_evaluation(client: MlflowClient, candidate: Candidate, data: PreparedData, gate_metric: str) -> None:
    """The candidate's validation score and test evaluation, in its run (which keeps its own end time).

    MLflow's classifier evaluation (`mlflow.models.evaluate`, model_type="classifier") logs accuracy,
    precision, recall, F1, the confusion matrix and, for more than two classes, the per-class table,
    with the names MLflow users know (`test_accuracy_score`...). It reads class probabilities only
    from a model with `predict_proba`, which a pyfunc model has not, so textsweep adds by hand what
    needs them: ROC AUC and its curve; and the names the alias gate and version tags have always used
    (`test_accuracy`, `test_f1_macro`, per-class precision and recall: evaluation.evaluation_metrics).
    """
    labels = data.test.labels
    ended = client.get_run(candidate.run_id).info.end_time
    names = [str(c) for c in data.classes]
    # Class names in the figures where they are distinct as text; indices otherwise.
    targets = [names[i] for i in labels] if len(set(names)) == len(names) else list(labels)
    predicted_index = predicted_classes(candidate.test_probabilities)
    predictions = [names[i] for i in predicted_index] if len(set(names)) == len(names) else list(predicted_index)
    label_list = names if len(set(names)) == len(names) else list(range(len(names)))
    frame = pd.DataFrame({"target": targets, "prediction": predictions})
    with mlflow.start_run(run_id=candidate.run_id):
        # The served model's validation score, as the choice saw it (a trial's own val_accuracy is per epoch).
        mlflow.log_metric(f"candidate_{validation_metric(gate_metric)}", candidate.val_score)
        mlflow.models.evaluate(
            data=frame, targets="target", predictions="prediction", model_type="classifier",
            evaluator_config={"label_list": label_list, "pos_label": label_list[-1] if len(label_list) == 2 else None,
                              "metric_prefix": "test_", "log_model_explainability": False},
        )
        mlflow.log_metrics(candidate.test_metrics)
        title = f"{candidate.name}: test split ({len(labels)} rows)"
        for artifact, figure in evaluation_figures(labels, candidate.test_probabilities, title).items():
            mlflow.log_figure(figure, artifact, save_kwargs={"dpi": 80})
    client.set_terminated(candidate.run_id, "FINISHED", end_time=ended)  # reopening moved its end to now


def log_served_model(candidate: Candidate, data: PreparedData) -> Any:
    """Log the candidate as the served pyfunc model (serving.py, from code) in its run; returns MLflow's ModelInfo."""
    import textsweep

    artifacts: dict[str, str] = {}
    ended = MlflowClient().get_run(candidate.run_id).info.end_time
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        if candidate.lstm_weight > 0:
            keras_path = folder / "model.keras"
            candidate.keras_model.save(keras_path)
            tokenizer = load_tokenizer(candidate.tokenizer_json)
            # A word vocabulary keeps the artifact name every earlier version has; subword pieces get their own.
            name = serving.VOCABULARY_ARTIFACT if isinstance(tokenizer, Vocabulary) else serving.SUBWORD_ARTIFACT
            (folder / f"{name}.json").write_text(candidate.tokenizer_json, encoding="utf-8")
            artifacts |= {name: str(folder / f"{name}.json"), serving.KERAS_MODEL_ARTIFACT: str(keras_path)}
        if candidate.lstm_weight < 1:
            save_reference(candidate.reference, str(folder / "reference.skops"))
            served = {"kind": candidate.kind, "classes": list(data.classes), "cleaning": data.cleaning,
                      "lstm_weight": candidate.lstm_weight}
            (folder / "served.json").write_text(json.dumps(served), encoding="utf-8")
            artifacts |= {serving.REFERENCE_ARTIFACT: str(folder / "reference.skops"),
                          serving.SERVED_ARTIFACT: str(folder / "served.json")}
        with mlflow.start_run(run_id=candidate.run_id):
            info = mlflow.pyfunc.log_model(
                name=PYFUNC_MODEL_NAME,
                python_model=serving.__file__,  # a model from code: MLflow runs the file, nothing is pickled
                code_paths=[str(Path(textsweep.__file__).parent)],  # the cleaning and tokenizers it imports
                artifacts=artifacts,
                signature=serving.signature(data.classes),
                input_example=serving.INPUT_EXAMPLE,
                pip_requirements=serving.pip_requirements(),
            )
    MlflowClient().set_terminated(candidate.run_id, "FINISHED", end_time=ended)  # reopening moved its end to now
    return info


PYFUNC_MODEL_NAME = "classifier"  # the served model, logged in the candidate's run
