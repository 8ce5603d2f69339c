"""The public API: `train`, `sweep`, `promote`, `load_model`, and the results they return.

Each function composes the stages top to bottom: the sweep file (config.py) and the data
(data/, text/) are checked before TensorFlow, KerasTuner or any MLflow run is touched, so a
user's mistake is reported in about a second and leaves nothing behind; then the search
(search/) runs with its observers, MLflow tracking (tracking/) one of them; the registry
(registry.py) promotes. The CLI (cli.py) is a thin layer over these functions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from textsweep import interrupts, tracking
from textsweep.config import SweepConfig, load_config, params_with, parse_config
from textsweep.data import PreparedData, load_data, prepare
from textsweep.errors import ConfigError, DataError, RegistryError, SweepError
from textsweep.reference import versus_reference  # noqa: F401 (the CLI prints it: cli.py reads api only)
from textsweep.text import EncodedSplits, encode_splits
from textsweep.tracking.tags import MEAN_METRIC, SEEDS_METRIC, STD_METRIC, TAG_DEADLINE

DATAFRAME_SOURCE = "dataframe"  # data.source logged for a DataFrame passed to the API
ConfigLike = str | Path | Mapping | SweepConfig


# ---------------------------------------------------------------- inputs


def resolve_config(config: ConfigLike) -> SweepConfig:
    """A sweep-file path, a dict with the same keys, or a `SweepConfig`, validated."""
    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(dict(config), source="the sweep config dict")
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise ConfigError(
        f"config must be a sweep-file path, a dict with a sweep file's keys, or a SweepConfig; got {type(config).__name__}"
    )


def prepare_data(config: SweepConfig, data: pd.DataFrame | None = None) -> tuple[PreparedData, EncodedSplits]:
    """Load `data.source` (or take `data`), clean, split and encode once per job: trials only cap ids and pad."""
    if data is None:
        prepared = load_data(config.data)
    elif isinstance(data, pd.DataFrame):
        prepared = prepare(data, config.data.model_copy(update={"source": DATAFRAME_SOURCE}))
    else:
        raise DataError(f"data must be a pandas DataFrame with columns {config.data.text_column!r} and "
                        f"{config.data.label_column!r}; got {type(data).__name__}")
    if note := prepared.script_note():
        print(note, file=sys.stderr, flush=True)
    return prepared, encode_splits(prepared, subword_size=config.subword_size)


def check_model_fits_data(config: SweepConfig, prepared: PreparedData) -> None:
    """What only the data can tell about the model (a sigmoid output for 3 classes), checked
    before any MLflow run exists, so that a mistake leaves nothing behind."""
    from textsweep.model import check_output_fits

    check_output_fits(config.defaults.output, len(prepared.classes))


def checked_callbacks(callbacks: Any) -> list[Any]:
    """`callbacks=` of the API as a list of Keras callbacks, or a ConfigError before any run exists."""
    if isinstance(callbacks, (str, bytes, Mapping)) or not isinstance(callbacks, Iterable):
        raise ConfigError(f"callbacks must be a list of Keras callbacks (keras.callbacks.Callback); got {callbacks!r}")
    callbacks = list(callbacks)
    if callbacks:
        import keras

        wrong = [c for c in callbacks if not isinstance(c, keras.callbacks.Callback)]
        if wrong:
            raise ConfigError(
                f"callbacks must be Keras callbacks (keras.callbacks.Callback); {wrong[0]!r} "
                f"({type(wrong[0]).__name__}) is not one"
            )
    return callbacks


@contextlib.contextmanager
def environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `overrides` for the duration (a notebook's next sweep must not inherit them)."""
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ---------------------------------------------------------------- results


class RawTextModel:
    """A classifier of raw texts: `predict(["a text", ...])` returns one row per text with its label
    and probabilities, cleaned and encoded the way its trial was trained."""

    def __init__(self, predict_frame: Any, uri: str):
        self._predict_frame = predict_frame
        self.uri = uri

    def predict(self, texts: str | Sequence[str] | pd.Series | pd.DataFrame) -> pd.DataFrame:
        from textsweep.serving import checked_texts  # the served model's rule: strings only, "" included

        try:
            frame = pd.DataFrame({"text": checked_texts(texts)})
        except DataError as exc:
            raise DataError(f'{exc}. Pass each text as a Python string ("" for an empty text)') from None
        predictions = self._predict_frame(frame).reset_index(drop=True)
        return pd.concat([frame, predictions.drop(columns=["text"], errors="ignore")], axis=1)

    def __repr__(self) -> str:
        return f"RawTextModel({self.uri!r})"


def load_model(uri: str) -> RawTextModel:
    """A registered (or any logged) textsweep model as a raw-text classifier,
    e.g. `load_model("models:/imdb-sentiment@champion").predict(["a wonderful film"])`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if uri.startswith(("models:", "runs:")):  # read from the store, which must exist; a path needs none
        tracking.connect(create=False)
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        message = str(getattr(exc, "message", exc)).rstrip(".")
        raise RegistryError(
            f"cannot load model {uri!r} from {tracking.redact(tracking.tracking_uri())}: {message}. Check the name "
            "and alias (textsweep promote registers models:/<registry.model_name>@<registry.alias>) and that "
            "you run from the directory holding the store, or set MLFLOW_TRACKING_URI"
        ) from None
    return RawTextModel(model.predict, uri)


def load_trial_model(experiment_id: str, run_id: str) -> RawTextModel:
    """A trial's own Keras model and tokenizer (no registry needed) as a raw-text classifier."""
    from textsweep.candidates import TrialChoice, trial_keras_model, trial_vocabulary
    from textsweep.serving import classify
    from textsweep.text import load_tokenizer

    tracking.connect(create=False)
    trial = TrialChoice("", experiment_id, run_id, "", "", float("nan"))
    keras_model, vocabulary = trial_keras_model(trial), load_tokenizer(trial_vocabulary(trial))
    return RawTextModel(lambda frame: classify(keras_model, vocabulary, frame["text"].tolist()), f"runs:/{run_id}")


@dataclass
class TrainResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]


@dataclass
class SweepResult:
    """A finished (or resumed, or budget-ended) sweep, read back from MLflow."""

    sweep_run_id: str
    experiment_id: str
    experiment_name: str
    leaderboard: pd.DataFrame  # finished trials, best first (confirmed trials first, by their mean)
    resumed: bool
    elapsed_s: float
    role: str = "single"
    stopped_by: str | None = None  # "max_time" when search.max_time ended the search
    stop_reason: str | None = None  # then, in words: the budget, and how long an epoch and a trial take
    reference: dict[str, float] | None = None  # the linear reference's figures (search.reference)
    confirmation: str | None = None  # what search.confirm did, in one line (None: it did not run)
    config: SweepConfig | None = field(default=None, repr=False)
    data: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def best_run_id(self) -> str | None:
        return None if self.leaderboard.empty else str(self.leaderboard.iloc[0]["run_id"])

    @property
    def best_params(self) -> dict[str, Any]:
        """The best trial's full training params (searched values over the sweep file's defaults)."""
        if self.leaderboard.empty or self.config is None:
            return {}
        best = self.leaderboard.iloc[0]
        return params_with(self.config.defaults, {name: best[name] for name in self.config.search.space}).model_dump()

    def best_model(self) -> RawTextModel:
        """The best trial's model, usable on raw text before any promotion."""
        if self.best_run_id is None:
            raise SweepError(f"sweep run {self.sweep_run_id} has no finished trial; resume the sweep first")
        return load_trial_model(self.experiment_id, self.best_run_id)

    def promote(self) -> Any:
        """Evaluate the best trial on the test split, register it, and move the alias if it wins."""
        if self.config is None:
            raise SweepError("this result has no sweep config; call textsweep.promote(config, sweep_run_id=...)")
        return promote(self.config, sweep_run_id=self.sweep_run_id, data=self.data)


def where_to_browse(experiment_id: str) -> str:
    """Two lines: the store (without credentials), and how to open the experiment in the MLflow UI."""
    uri = tracking.tracking_uri()
    return f"store: {tracking.redact(uri)}\nbrowse: {tracking.ui_command(uri, experiment_id)}"


def leaderboard_text(table: pd.DataFrame, objective: str, rows: int = 5) -> str:
    """The top `rows` trials as printed by the sweep's summary and `textsweep runs`: a trial confirmed
    over seeds (search.confirm) shows `mean ± std (n seeds)`, and a line says that the mean chose the best."""
    mean, std = MEAN_METRIC.format(objective=objective), STD_METRIC.format(objective=objective)
    shown = table.head(rows)
    if mean not in table:
        return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    confirmed = table[mean].notna()
    if confirmed.any():
        spread = [f"{m:.4f} ± {s:.4f} ({n} seeds)" if pd.notna(m) else "-"
                  for m, s, n in zip(shown[mean], shown[std], shown[SEEDS_METRIC])]
        shown = shown.drop(columns=[mean, std, SEEDS_METRIC])
        shown.insert(shown.columns.get_loc(f"best_{objective}") + 1, f"{mean} ± std (seeds)", spread)
    else:
        shown = shown.drop(columns=[mean, std, SEEDS_METRIC])
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    if confirmed.any():
        best = table.iloc[0]
        text += (f"\nthe best trial is chosen by its {mean} over seeds (search.confirm), not by one seed's best_{objective}: "
                 f"trial {best['trial_id']}, {best[mean]:.4f} ± {best[std]:.4f} over {best[SEEDS_METRIC]} seeds; "
                 f"{int(confirmed.sum())} of {len(table)} trials confirmed, the others ranked below them by best_{objective}")
    return text


def chosen_accuracy(table: pd.DataFrame) -> tuple[float | None, str]:
    """The chosen trial's validation accuracy to set against the linear reference: its mean when
    confirmed over seeds, else its best epoch's; and how to name it."""
    if table.empty or "best_val_accuracy" not in table:
        return None, "the best trial"
    best = table.iloc[0]
    if pd.notna(best.get("mean_val_accuracy")):
        return float(best["mean_val_accuracy"]), f"the best trial (mean over {best[SEEDS_METRIC]} seeds)"
    return float(best["best_val_accuracy"]), "the best trial"


def sweep_runs(name: str, sweep_run_id: str | None = None) -> tuple[Any, pd.DataFrame, dict[str, float] | None]:
    """The latest (or given) sweep run of experiment `name`, its finished trials (best first) and its
    linear reference's figures; reads the store, never creates one."""
    sweep, table = tracking.sweep_leaderboard(name, sweep_run_id)
    reference = tracking.reference_run(tracking.connect(create=False), sweep.info.experiment_id, sweep.info.run_id)
    return sweep, table, dict(reference.data.metrics) if reference else None


# ---------------------------------------------------------------- the jobs


@interrupts.recorded(signal.SIGINT)
def train(config: ConfigLike, *, data: pd.DataFrame | None = None) -> TrainResult:
    """Train the sweep file's `defaults` once, in one MLflow run; returns its id and test metrics."""
    config = resolve_config(config)
    tracking.check_store()  # one message in seconds, before the data's work
    prepared, encoded = prepare_data(config, data)  # before any run exists: bad data leaves no run behind
    check_model_fits_data(config, prepared)
    # From the store on, Ctrl-C waits for a safe point: a block's end, a batch (textsweep.interrupts).
    with interrupts.deferred():
        client = tracking.connect()  # a new SQLite store is made only now (~3 s), once the data is good
        import mlflow
        from keras.callbacks import TerminateOnNaN

        from textsweep.model import build_model, fit_model

    defaults = config.defaults
    params = defaults.model_copy(update={"max_features": encoded.cap_max_features(defaults.max_features, defaults.tokenizer)})
    encoded, maxlen = encoded.seen_by(params), encoded.maxlen_for(params)
    with interrupts.deferred(), tracking.job_run(client, config, kind="train") as run:
        tracking.log_dataset_and_sweep_file(config, prepared)
        tracking.log_params(params, maxlen, encoded)
        model = build_model(params, len(encoded.classes))
        history = fit_model(
            model, params.model_copy(update={"maxlen": maxlen}), encoded,
            callbacks=[tracking.epoch_metrics_callback(), TerminateOnNaN()],
        )
        x_test, y_test = encoded.arrays("test", params.max_features, maxlen)
        test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0, batch_size=512)
        metrics = {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss)}
        mlflow.log_metrics(metrics)
        tracking.log_vocabulary(encoded, params, maxlen)
        tracking.log_learning_curves(history.history, f"{config.name}: training run")
        tracking.log_keras_model(model)
    return TrainResult(run.info.run_id, run.info.experiment_id, metrics)


def promote(config: ConfigLike, *, sweep_run_id: str | None = None, data: pd.DataFrame | None = None) -> Any:
    """Evaluate a sweep's best trial on the test split, register it, move the alias if it beats the champion."""
    from textsweep.registry import promote_if_better

    config = resolve_config(config)
    prepared = prepare_data(config, data)[0] if data is not None else None  # else registry reads data.source
    return promote_if_better(config, sweep_run_id=sweep_run_id, data=prepared)


@interrupts.recorded(signal.SIGINT)
def sweep(config: ConfigLike, *, data: pd.DataFrame | None = None, quiet: bool = False, restart: bool = False,
          workers: int = 0, callbacks: Sequence[Any] = (), stream: Any = None) -> SweepResult:
    """Run (or resume) the KerasTuner search of `config`, one nested MLflow run per trial.

    `config`: a sweep-file path, a dict with the same keys, or a `SweepConfig`. `data`: a DataFrame
    used instead of `data.source` (fingerprinted and logged like a file). `quiet`: no progress
    bar. `restart`: discard the saved tuner state (tracking.tuner_directory says where it lives).
    `workers`: that many local worker processes, this one serving KerasTuner's oracle as chief
    (KerasTuner's variables name the role otherwise). `callbacks`: Keras callbacks for every `fit`.
    """
    sweep_file = Path(config) if isinstance(config, (str, Path)) else None
    config = resolve_config(config)
    if workers < 0:
        raise ConfigError(f"workers must be 0 or more, got {workers}")
    callbacks = checked_callbacks(callbacks)
    tracking.check_store()  # one message in seconds, before the data's work
    prepared, encoded = prepare_data(config, data)  # once: every trial only caps ids and pads
    check_model_fits_data(config, prepared)
    # From the store on, Ctrl-C waits for a safe point: a block's end, a trial's start or end, a
    # batch; never inside an MLflow write or TensorFlow (textsweep.interrupts).
    with interrupts.deferred():
        client = tracking.connect()  # a new SQLite store is made only now (~3 s), once the data is good
        from textsweep import search  # KerasTuner loads TensorFlow (seconds): only once the inputs are good

    directory = tracking.tuner_directory(config.name, sweep_file)
    started = time.monotonic()
    with (environment(search.local_chief_environment() if workers else {}), search.long_lived_objects_frozen(),
          interrupts.deferred()):
        role = search.distributed_role() or "single"  # the one place a process learns its role
        if role == "worker":
            return join_sweep_as_worker(client, config, prepared, encoded, directory, quiet=quiet,
                                        callbacks=callbacks, stream=stream)
        oracle = search.oracle_address() if role == "chief" else None
        if role == "chief":
            from textsweep.devices import stay_off_gpus

            stay_off_gpus()  # before its tuner builds a model: the GPUs are the workers'
        # search.max_time counts from this run's start: a rerun with a larger budget resumes
        deadline = time.time() + config.search.max_time_seconds if config.search.max_time else None
        with search.owner_lock(directory, config.name, role, oracle):
            identity = search.sweep_identity(config, prepared.fingerprint)
            resume_id = resumed_sweep_run(client, config, directory, identity, restart=restart)
            with tracking.sweep_run(client, config, prepared, resume_run_id=resume_id, deadline=deadline,
                                    oracle=oracle) as run:
                experiment, sweep_run_id = run.info.experiment_id, run.info.run_id
                # The store, experiment and sweep run this state belongs to, checked on resume.
                search.write_state(directory, identity | tracking.state_owner(config.name, run))
                reference = fit_reference_once(client, config, prepared, experiment, sweep_run_id)
                observers = [tracking.MlflowTrialObserver(client, experiment, sweep_run_id, encoded, config.search.objective),
                             search.ProgressBar(quiet=quiet, stream=stream)]
                if role == "chief":
                    worker_env = {"TEXTSWEEP_SWEEP_RUN_ID": sweep_run_id, "MLFLOW_TRACKING_URI": tracking.tracking_uri()}
                    tuner = search.serve_as_chief(config, directory, encoded, observers, workers=workers, data=data,
                                                  deadline=deadline, worker_env=worker_env, quiet=quiet, stream=stream)
                else:
                    tuner = search.run_search(config, directory, encoded, observers, deadline=deadline, callbacks=callbacks)
                # search.confirm: the top trials again with other seeds, here only (workers never do)
                confirmation = search.confirm_top_trials(tuner, config, encoded, observers, deadline=deadline,
                                                         callbacks=callbacks)
                table, stop_reason = tracking.log_sweep_outcome(client, config, experiment, sweep_run_id, tuner.stopped_by_time)
    return SweepResult(
        sweep_run_id, experiment, config.name, table, bool(resume_id), time.monotonic() - started, role,
        stopped_by="max_time" if tuner.stopped_by_time else None, stop_reason=stop_reason, reference=reference,
        confirmation=search.confirmation_text(confirmation, config.search.objective), config=config, data=data,
    )


def resumed_sweep_run(client: Any, config: SweepConfig, directory: Path, identity: dict[str, Any], *,
                      restart: bool) -> str | None:
    """The sweep run this run resumes, or None for a new sweep: the saved tuner state must hold the
    same search and data (search.resume_state) and belong to a run this store holds."""
    from textsweep import search

    state = search.resume_state(directory, identity, config.name, restart=restart)
    if state is None:
        return None
    tracking.check_state_store(client, config, directory, state)
    return state.get("sweep_run_id")


def join_sweep_as_worker(
    client: Any, config: SweepConfig, prepared: PreparedData, encoded: EncodedSplits, directory: Path,
    *, quiet: bool, callbacks: Sequence[Any], stream: Any,
) -> SweepResult:
    """A worker: pull trials from the chief's oracle, each logged under the chief's sweep run."""
    from textsweep import search

    started = time.monotonic()
    experiment = tracking.experiment_id(client, config.name)
    chief = search.oracle_address()
    print(f"worker {os.environ['KERASTUNER_TUNER_ID']}: data ready, joining the sweep of chief {chief}",
          file=sys.stderr, flush=True)
    sweep_run = client.get_run(tracking.chief_sweep_run(client, experiment, chief))
    chief_fingerprint = sweep_run.data.params.get("data_fingerprint")
    if chief_fingerprint != prepared.fingerprint:
        raise ConfigError(
            f"this worker's data (fingerprint {prepared.fingerprint}) differs from the chief's ({chief_fingerprint}); "
            "give every process the same sweep file and data"
        )
    # The chief's budget: its oracle starts no trial after it, and this worker's running trial
    # stops at the end of its epoch.
    deadline = float(sweep_run.data.tags[TAG_DEADLINE]) if sweep_run.data.tags.get(TAG_DEADLINE) else None
    observers = [tracking.MlflowTrialObserver(client, experiment, sweep_run.info.run_id, encoded, config.search.objective),
                 search.ProgressBar(quiet=quiet, stream=stream)]
    tuner = search.run_search(config, directory, encoded, observers, deadline=deadline, callbacks=callbacks)
    return SweepResult(sweep_run.info.run_id, experiment, config.name, pd.DataFrame(), False,
                       time.monotonic() - started, f"worker {tuner.tuner_id}", config=config)


def fit_reference_once(client: Any, config: SweepConfig, prepared: PreparedData, experiment: str,
                       sweep_run_id: str) -> dict[str, float] | None:
    """The sweep's linear reference, fitted once (seconds) on the training split and logged as a
    nested run: the figure the LSTM trials have to beat. A resumed sweep reuses its run."""
    if not config.search.reference:
        return None
    if (existing := tracking.reference_run(client, experiment, sweep_run_id)) is not None:
        return dict(existing.data.metrics)
    from textsweep.reference import fit_reference

    fitted = fit_reference(prepared)
    metrics = {"val_accuracy": fitted.val_accuracy, "test_accuracy": fitted.test_accuracy,
               "test_f1_macro": fitted.test_f1_macro, "fit_seconds": fitted.fit_seconds}
    tracking.log_reference_run(experiment, sweep_run_id, metrics, fitted.params)
    return metrics
