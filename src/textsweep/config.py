"""Typed sweep configuration, loaded and validated from a sweep file (YAML).

Every default lives here, once: the `defaults` section defaults to seed A's notebook
(../shared/SEEDS.md). A validation error names the file, the key and the fix.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from textsweep.errors import ConfigError

# The hyperparameters a sweep may search; every other training setting is fixed per sweep.
SWEPT_PARAMS = (
    "max_features",
    "embed_dim",
    "lstm_out",
    "spatial_dropout",
    "dropout",
    "recurrent_dropout",
    "batch_size",
    "learning_rate",  # Adam's; search it with sampling: log
    "bidirectional",  # {values: [false, true]}
    "tokenizer",  # {values: [word, subword]}
)
TOKENIZERS = ("word", "subword")
NAMED_PARAMS = ("tokenizer",)  # searched over names, not numbers
BOOLEAN_PARAMS = ("bidirectional",)  # searched as {values: [false, true]}

def _not_a_boolean(value: Any) -> Any:
    # pydantic reads true/false as 1/0 for numbers: `batch_size: true` would train with batch size 1.
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number; write a number")
    return value


# Every numeric setting is one of these: a number as YAML or Python writes it, never a boolean.
Integer = Annotated[int, BeforeValidator(_not_a_boolean)]
Number = Annotated[float, BeforeValidator(_not_a_boolean)]


class _Section(BaseModel):
    # Unknown keys are errors (with a did-you-mean), never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


CLEANING_MODES = ("unicode", "seed_a", "none")


class DataConfig(_Section):
    source: str = "imdb"
    text_column: str = "text"
    label_column: str = "label"
    # The class order, e.g. [negative, neutral, positive]; None = the label values sorted.
    classes: list[bool | int | float | str] | None = None
    # Labels mapped explicitly to class indices 0..n-1, e.g. {neg: 0, pos: 1}. Several labels may
    # share an index ({neg: 0, negative: 0, pos: 1}); class i is named by its first key. Labels
    # match a key by its text, so a number key ({0: 0, 1: 1}, as YAML reads it unquoted) matches
    # the label 0 of a number column and "0" of a string column alike, and names its class 0.
    label_map: dict[int | float | str, Integer] | None = None
    # unicode: letters and digits of every script, lowercased; seed_a: the notebook's exact rule;
    # none: the text as given.
    cleaning: Literal["unicode", "seed_a", "none"] = "unicode"
    encoding: str = "utf-8"
    limit: Integer | None = Field(default=None, ge=10)
    test_size: Number = Field(default=0.33, gt=0, lt=1)
    val_size: Number = Field(default=0.1, gt=0, lt=1)
    seed: Integer = 42

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_keys_are_labels(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        booleans = [key for key in value if isinstance(key, bool)]
        if booleans:
            raise ValueError(
                f"key {booleans[0]!r} is a boolean: YAML reads unquoted yes/no/true/false/on/off as "
                "booleans; quote each key as your label column writes it, e.g. {'yes': 1, 'no': 0} or {'True': 1, 'False': 0}"
            )
        texts = [label_text(key) for key in value]
        repeated = sorted({text for text in texts if texts.count(text) > 1})
        if repeated:
            raise ValueError(
                f"keys {[k for k in value if label_text(k) in repeated]} are one label "
                "written twice (labels match keys by their text); keep one of them"
            )
        return value

    @model_validator(mode="after")
    def _text_and_label_are_two_columns(self) -> DataConfig:
        if self.text_column == self.label_column:
            raise ValueError(
                f"text_column and label_column are both {self.text_column!r}; the texts and their labels are two "
                "columns: set data.label_column (or data.text_column) to the other one"
            )
        return self

    @model_validator(mode="after")
    def _splits_leave_training_rows(self) -> DataConfig:
        if self.test_size + self.val_size >= 0.9:
            raise ValueError(
                f"test_size + val_size is {self.test_size + self.val_size:.2f}; "
                "keep it below 0.9 so the training split is not starved"
            )
        return self

    @model_validator(mode="after")
    def _classes_are_a_clear_order(self) -> DataConfig:
        if self.classes is not None and self.label_map is not None:
            raise ValueError("give data.classes or data.label_map, not both (label_map already orders the classes)")
        if self.classes is not None:
            if len(self.classes) < 2:
                raise ValueError(f"classes {self.classes} lists fewer than 2 classes; a classifier needs at least 2")
            repeated = sorted({str(c) for c in self.classes if self.classes.count(c) > 1})
            if repeated:
                raise ValueError(f"classes lists {', '.join(repeated)} more than once; list each class once")
        if self.label_map is not None:
            indices = sorted(set(self.label_map.values()))
            if len(indices) < 2 or indices != list(range(len(indices))):
                raise ValueError(
                    f"label_map values {indices} must be the class indices 0..n-1 (n >= 2), "
                    "e.g. {neg: 0, pos: 1} or {negative: 0, neutral: 1, positive: 2}"
                )
        return self


# max_features is an embedding of max_features x embed_dim float32 weights, and training with
# Adam holds three more arrays of that size (two moments and the gradient). 2**29 weights are
# 2 GiB, ~8 GiB in training: about what one GPU or a small machine can give a trial. Above that
# every trial dies out of memory, so such a range is refused when the sweep file is loaded.
EMBEDDING_WEIGHTS_LIMIT = 2**29
# No text set has 2 million distinct words worth an id (the 25,000 IMDB reviews have ~75,000),
# and a max_features above the vocabulary is capped to it per trial anyway.
MAX_FEATURES_LIMIT = 2_000_000


def embedding_too_large(max_features: float, embed_dim: float) -> str | None:
    """Why an embedding of this size cannot be trained, or None when it can."""
    if max_features > MAX_FEATURES_LIMIT:
        return (
            f"max_features {max_features:,.0f} is above {MAX_FEATURES_LIMIT:,}: no text set has that many "
            "distinct words and its embedding would not fit in memory; use e.g. 1000-50000"
        )
    weights = max_features * embed_dim
    if weights > EMBEDDING_WEIGHTS_LIMIT:
        return (
            f"max_features {max_features:,.0f} x embed_dim {embed_dim:,.0f} is an embedding of {weights:,.0f} "
            f"weights ({weights * 4 / 2**30:,.1f} GiB of float32, ~4x that while training with Adam); "
            f"keep max_features x embed_dim at most {EMBEDDING_WEIGHTS_LIMIT:,} by lowering one of them"
        )
    return None


class TrainingParams(_Section):
    """One training run's hyperparameters (seed A's values by default)."""

    max_features: Integer = Field(default=2000, ge=2)
    embed_dim: Integer = Field(default=128, ge=1)
    lstm_out: Integer = Field(default=196, ge=1)
    spatial_dropout: Number = Field(default=0.4, ge=0, lt=1)
    dropout: Number = Field(default=0.2, ge=0, lt=1)
    recurrent_dropout: Number = Field(default=0.2, ge=0, lt=1)
    batch_size: Integer = Field(default=32, ge=1)
    epochs: Integer = Field(default=7, ge=1)
    # Padded length. None = the longest training sequence (seed A), but at most twice the 99th
    # percentile of the training lengths, so one huge text does not pad every text to its length
    # (text.EncodedSplits.resolve_maxlen). An explicit maxlen is used as given, above the cap too.
    maxlen: Integer | None = Field(default=None, ge=1)
    # Batch texts of similar length, pad each batch only to its longest text (maxlen still caps
    # it) and mask the padding (Embedding mask_zero), so the LSTM skips the leading zeros: ~2.5x
    # faster training on short texts, and a text's prediction no longer depends on how far it was
    # padded. false is seed A's exact computation: every batch padded to maxlen, no mask (and
    # cuDNN on a GPU with recurrent_dropout 0). BENCHMARKS.md sections 1 and 1b have both.
    length_buckets: bool = True
    # Seed A: Dense(2, softmax); seed B: Dense(1, sigmoid).
    output: Literal["softmax", "sigmoid"] = "softmax"
    learning_rate: Number = Field(default=0.001, gt=0, lt=1)
    # Keras' Bidirectional wrapper around the same LSTM: it reads each text both ways (twice the
    # LSTM's weights and time); the seeds are unidirectional.
    bidirectional: bool = False
    # `word`: seed A's Keras-Tokenizer ids (max_features most frequent words, others dropped).
    # `subword`: BPE pieces from the HF `tokenizers` library with max_features ids, fitted once per
    # sweep on the training split (text/subword.py): unseen word forms and typos still get pieces.
    # An explicit maxlen counts pieces then (a word is ~1.5 pieces on the Uzbek set).
    tokenizer: Literal["word", "subword"] = "word"
    mixed_precision: bool = False
    seed: Integer = 42

    @model_validator(mode="after")
    def _embedding_fits_in_memory(self) -> TrainingParams:
        problem = embedding_too_large(self.max_features, self.embed_dim)
        if problem:
            raise ValueError(problem)
        return self


class SpaceEntry(_Section):
    """One searched hyperparameter: `{values: [...]}` or `{min, max, step}` / `{min, max, sampling: log}`."""

    # Strings: the tokenizer's names; booleans (bidirectional's) are read as 0.0 / 1.0.
    values: list[float | str] | None = None
    min: Number | None = None
    max: Number | None = None
    step: Number | None = Field(default=None, gt=0)
    sampling: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _one_form(self) -> SpaceEntry:
        if self.values is not None:
            if self.min is not None or self.max is not None or self.step is not None:
                raise ValueError("give either values or min/max, not both")
            if not self.values:
                raise ValueError("values is empty; list at least one value")
            return self
        if self.min is None or self.max is None:
            raise ValueError("give values: [...] or both min and max")
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g}); swap them")
        if self.sampling == "log" and self.min <= 0:
            raise ValueError("sampling: log needs min > 0")
        return self

    def bounds(self) -> list[float]:
        return list(self.values) if self.values is not None else [self.min, self.max]

    def including(self, value: float) -> SpaceEntry:
        """This entry widened to hold `value` (the default, which every sweep runs as trial 0)."""
        if not isinstance(value, str):
            value = float(value)  # as validation reads a number or a boolean in `values`
        if self.values is not None:
            return self if value in self.values else self.model_copy(update={"values": sorted([*self.values, value])})
        if self.step is not None and self.sampling == "linear":
            grid = [self.min + k * self.step for k in range(int((self.max - self.min) / self.step + 1e-9) + 1)]
            if any(abs(point - value) < 1e-9 for point in grid):
                return self
            # Off the grid: KerasTuner's stepped ranges cannot hold it, a list of values can.
            return SpaceEntry(values=sorted([*grid, value]))
        if self.min <= value <= self.max:
            return self
        return self.model_copy(update={"min": min(self.min, value), "max": max(self.max, value)})


class ConfirmConfig(_Section):
    """search.confirm: after the search, the top `top` trials (by best_<objective>) are trained
    again with seeds + 1, + 2, ... until each has `seeds` executions, the original included, and
    the leaderboard ranks them by the mean. A small validation split's noise (one standard error
    of an accuracy can be ~0.8 points) exceeds the gaps between the top trials: the mean picks better.

    `when`: `always` (what a `confirm: {...}` section in a sweep file means), `never`
    (`confirm: false`), or `auto` (the default): on only when it at most doubles the search,
    i.e. search.max_trials >= top * (seeds - 1), so small sweeps cost what they did.
    """

    top: Integer = 3
    seeds: Integer = 3
    when: Literal["auto", "always", "never"] = "auto"

    @field_validator("top")
    @classmethod
    def _top_is_a_trial_count(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"top is how many of the best trials to train again: 1 or more (got {value})")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds_include_the_original(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"seeds counts a trial's executions, its original one included: 2 or more (got {value}); "
                             "write `confirm: false` to turn confirmation off")
        return value


class SearchConfig(_Section):
    algorithm: Literal["random", "bayesian", "hyperband", "grid"] = "random"
    max_trials: Integer = Field(default=20, ge=1)
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    space: dict[str, SpaceEntry] = Field(default_factory=dict)
    patience: Integer | None = Field(default=None, ge=1)  # early stopping on the objective
    hyperband_factor: Integer = Field(default=3, ge=2)
    max_consecutive_failures: Integer = Field(default=3, ge=1)
    promote: bool = False
    # Wall-clock budget, e.g. "90m", "2h", "1h30m", "45s" (or seconds as a number): no trial
    # starts after it, and the running trial stops at the end of its current epoch.
    max_time: str | None = None
    # A distributed worker that reports no epoch for this long loses its trial to another worker
    # (a local worker that dies loses it at once). Longer than one epoch of the slowest trial.
    worker_timeout: str = "30m"
    # A TF-IDF word + character n-gram logistic regression fitted on the same training split,
    # logged as one run in the sweep: what the LSTM trials have to beat.
    reference: bool = True
    # Train the top trials again with other seeds and rank them by the mean (ConfirmConfig):
    # `{top: 3, seeds: 3}` always, `false` never; left out, only where max_trials >= top * (seeds - 1).
    confirm: ConfirmConfig = ConfirmConfig()

    @field_validator("confirm", mode="before")
    @classmethod
    def _confirm_shorthand(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, bool):  # `confirm: false` turns it off; `true` runs it with top 3, seeds 3
            return {"when": "always" if value else "never"}
        if isinstance(value, dict):
            return {"when": "always", **value}  # a section written out runs whatever the budget
        raise ValueError(f"write false, true, or a section such as {{top: 3, seeds: 3}}; got {value!r}")

    @field_validator("max_time", "worker_timeout", mode="before")
    @classmethod
    def _duration_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{str(value).lower()} is a boolean, not a duration; write e.g. 90m, 2h, 1h30m or 45s")
        if isinstance(value, (int, float)):
            return f"{value}s"
        return value

    @model_validator(mode="before")
    @classmethod
    def _numeric_space_values_are_not_booleans(cls, raw: Any) -> Any:
        # SpaceEntry reads true/false as 1.0/0.0, which only `bidirectional` means; seen before that.
        space = raw.get("space") if isinstance(raw, dict) else None
        for name, entry in (space or {}).items() if isinstance(space, dict) else ():
            values = entry.get("values") if isinstance(entry, dict) else None
            if name not in BOOLEAN_PARAMS and isinstance(values, list) and any(isinstance(v, bool) for v in values):
                raise ValueError(f"space.{name} takes numbers; {values} holds booleans (true/false), which are not")
        return raw

    @field_validator("max_time", "worker_timeout")
    @classmethod
    def _duration_is_readable(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def worker_timeout_seconds(self) -> float:
        return parse_duration(self.worker_timeout)

    @property
    def max_time_seconds(self) -> float | None:
        return None if self.max_time is None else parse_duration(self.max_time)

    @property
    def confirmation(self) -> ConfirmConfig | None:
        """The confirmation this sweep runs, or None: `confirm.when` resolved against the budget."""
        confirm = self.confirm
        if confirm.when == "never" or (confirm.when == "auto" and self.max_trials < confirm.top * (confirm.seeds - 1)):
            return None
        return confirm

    @model_validator(mode="after")
    def _known_params(self) -> SearchConfig:
        for name, entry in self.space.items():
            if name not in SWEPT_PARAMS:
                raise ValueError(f"unknown hyperparameter {name!r}{_did_you_mean(name, SWEPT_PARAMS)}")
            named = name in NAMED_PARAMS
            if named and (entry.values is None or any(v not in TOKENIZERS for v in entry.values)):
                raise ValueError(f"space.tokenizer takes values from {list(TOKENIZERS)}, e.g. {{values: [word, subword]}}")
            if not named and any(isinstance(v, str) for v in entry.values or ()):
                words = [v for v in entry.values if isinstance(v, str)]
                raise ValueError(f"space.{name} takes numbers; {words} are not")
        if self.algorithm == "grid":
            for name, entry in self.space.items():
                if entry.values is None and entry.step is None:
                    raise ValueError(
                        f"grid search needs discrete values: give space.{name} a step or values"
                    )
        return self


CHALLENGER_ALIAS = "challenger"  # what a promoted version that loses the gate is called


class RegistryConfig(_Section):
    model_name: str | None = None  # None = the sweep's name
    alias: str = "champion"
    # What the alias gate compares on the test split; test_f1_macro suits imbalanced classes.
    gate_metric: Literal["test_accuracy", "test_f1_macro"] = "test_accuracy"
    # What promote chooses among, on the validation split (candidates.py): the best trial (`lstm`),
    # the sweep's linear reference, and their blend. `[lstm]` for those who must ship an LSTM.
    candidates: list[Literal["lstm", "reference", "blend"]] = Field(
        default_factory=lambda: ["lstm", "reference", "blend"], min_length=1
    )

    @model_validator(mode="after")
    def _mlflow_accepts_the_names(self) -> RegistryConfig:
        # MLflow would only refuse these once a version exists, i.e. after a whole sweep.
        if self.model_name is not None and (not self.model_name.strip() or any(c in self.model_name for c in "/:")):
            raise ValueError(f"model_name {self.model_name!r}: MLflow model names cannot be empty or contain '/' or ':'")
        alias = self.alias
        if not re.fullmatch(r"[\w\-]+", alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise ValueError(
                f"alias {alias!r}: MLflow aliases hold only letters, digits, _ and -, and 'latest' and "
                "v<number> are reserved; use e.g. champion"
            )
        if alias == CHALLENGER_ALIAS:
            raise ValueError(f"alias {alias!r} is what textsweep calls versions that lose the gate; use e.g. champion")
        if len(set(self.candidates)) < len(self.candidates):
            raise ValueError(f"candidates {self.candidates}: each kind once")
        return self


class SweepConfig(_Section):
    name: str = Field(min_length=1)  # the MLflow experiment
    data: DataConfig = Field(default_factory=DataConfig)
    defaults: TrainingParams = Field(default_factory=TrainingParams)
    search: SearchConfig = Field(default_factory=SearchConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    # Searched hyperparameters whose range was widened to hold their default: name -> default.
    _widened: dict[str, float] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _space_holds_the_defaults(self) -> SweepConfig:
        # Trial 0 of every sweep is `defaults` (the seed), so each searched range must hold its
        # default; one that does not is widened, and `textsweep sweeps show` says so.
        space, widened = dict(self.search.space), {}
        for name, entry in self.search.space.items():
            default = getattr(self.defaults, name)
            if (wider := entry.including(default)) is not entry:
                space[name], widened[name] = wider, default
        if widened:
            object.__setattr__(self.search, "space", space)  # the sections are frozen once validated
            self._widened = widened
        return self

    @property
    def widened_space(self) -> dict[str, float]:
        return dict(self._widened)

    @model_validator(mode="after")
    def _space_values_are_valid_params(self) -> SweepConfig:
        # Every end of every range must itself be a valid training value (a dropout of 1.2 is
        # refused here, not in trial 7).
        for name, entry in self.search.space.items():
            for value in entry.bounds():
                try:
                    params_with(self.defaults, {name: value})
                except ValidationError as exc:
                    reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ValueError(f"search.space.{name}: {value_text(value)} is not allowed: {reason}") from None
        return self

    @property
    def subword_size(self) -> int | None:
        """How many ids to fit the sweep's subword tokenizer with: the largest max_features a
        subword trial may use (trials cap it, text/subword.py); None when no trial uses subword."""
        tokenizers = self.search.space["tokenizer"].values if "tokenizer" in self.search.space else [self.defaults.tokenizer]
        if "subword" not in tokenizers:
            return None
        if "max_features" not in self.search.space:
            return self.defaults.max_features
        return int(max(self.search.space["max_features"].bounds()))

    @model_validator(mode="after")
    def _largest_embedding_fits_in_memory(self) -> SweepConfig:
        # Each end of each range is valid alone (above); a search may still pair the largest
        # max_features with the largest embed_dim.
        largest = {
            name: max(self.search.space[name].bounds()) if name in self.search.space else getattr(self.defaults, name)
            for name in ("max_features", "embed_dim")
        }
        problem = embedding_too_large(largest["max_features"], largest["embed_dim"])
        if problem:
            raise ValueError(f"search.space: the largest trial does not fit in memory: {problem}")
        return self

    @model_validator(mode="after")
    def _name_is_a_model_name(self) -> SweepConfig:
        if self.registry.model_name is None and any(c in self.name for c in "/:"):
            raise ValueError(f"name {self.name!r} is also the registered model's name, which cannot contain '/' or ':'; set registry.model_name")
        return self

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.name

    def to_yaml(self) -> str:
        # Python mode, not JSON: JSON would write label_map's number keys as strings ({0: 0} as {'0': 0}).
        written = self.model_dump()
        written["search"]["space"] = {name: space_entry_as_written(name, entry)
                                      for name, entry in written["search"]["space"].items()}
        return yaml.safe_dump(written, sort_keys=False)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90m`, `2h`, `1h30m` or `45s`."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; write e.g. 90m, 2h, 1h30m or 45s")
    hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r} is no time at all; give a positive duration")
    return total


def label_text(value: Any) -> str:
    """A label (or a label_map key) as text, the way labels are matched: 1.0 is "1", True is "True"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def space_entry_as_written(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A dumped `search.space` entry with an integer hyperparameter's whole numbers as integers.

    Validation reads a space's numbers as floats (`values: [8, 16]` holds 8.0 and 16.0), and what
    identifies a sweep for resume is computed from that form, so only what is shown or written
    out (`sweeps show`, sweep.yaml, the sweep run's `space.*` params) turns them back.
    """
    if type(getattr(TrainingParams(), name, None)) is not int:
        return entry

    def whole(value: Any) -> Any:
        return int(value) if isinstance(value, float) and value.is_integer() else value

    return {key: [whole(v) for v in value] if isinstance(value, list) else whole(value) for key, value in entry.items()}


def space_entry_text(name: str, entry: dict[str, Any]) -> str:
    """A `search.space` entry as JSON, as the sweep file writes it (`{"values": [8, 16]}`)."""
    return json.dumps(space_entry_as_written(name, entry))


def value_text(value: Any) -> str:
    """A space value as a person wrote it: `0.4`, `2000`, `subword`."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def params_with(defaults: TrainingParams, overrides: dict[str, Any]) -> TrainingParams:
    """`defaults` with some values replaced, validated; integer params are cast from floats."""
    values = defaults.model_dump()
    for name, value in overrides.items():
        if isinstance(values[name], bool):  # searched as {values: [false, true]}, i.e. 0.0 / 1.0
            values[name] = bool(value)
            continue
        integer = isinstance(values[name], int)
        values[name] = int(round(value)) if integer and value is not None else value
    return TrainingParams.model_validate(values)


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(choices)}"


def _section_fields(loc: tuple) -> list[str]:
    """The keys allowed where `loc` points, for did-you-mean suggestions."""
    model: type[BaseModel] = SweepConfig
    parts = [str(p) for p in loc[:-1]]
    while parts:
        part = parts.pop(0)
        if model is SearchConfig and part == "space":
            parts = parts[1:]  # skip the hyperparameter's name: search.space.<name>.<key>
            model = SpaceEntry
        else:
            model = model.model_fields[part].annotation
    return list(model.model_fields)


def _describe(error: dict) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}{_did_you_mean(str(loc[-1]), _section_fields(loc))}"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if "input" in error and error["type"] not in ("value_error",):
        return f"{where}: {message} (got {error['input']!r})"
    return f"{where}: {message}" if loc else message


def parse_config(raw: Any, *, source: str = "<sweep file>") -> SweepConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a YAML mapping with at least `name:`, got {type(raw).__name__}")
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{source}: invalid sweep file:\n  {problems}") from None


def sweep_files_in(directory: Path) -> Iterator[Path]:
    """The YAML files in `directory` (or its `sweeps/`) that look like sweep files: mappings with a `name`."""
    for path in sorted(directory.glob("sweeps/*.y*ml")) + sorted(directory.glob("*.y*ml")):
        with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and "name" in raw:
                yield path


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file."""
    path = Path(path)
    if path.is_dir():
        inside = next(sweep_files_in(path), None)
        raise ConfigError(
            f"sweep file {str(path)!r} is a directory, not a file; pass a sweep file (YAML), "
            f"e.g. --config {inside or 'sweeps/quick.yaml'}"
        )
    if not path.is_file():
        raise ConfigError(
            f"sweep file {str(path)!r} not found; pass an existing file, e.g. --config sweeps/quick.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(path))
