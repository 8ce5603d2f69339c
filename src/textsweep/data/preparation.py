"""Clean a labelled text set, de-duplicate it, split it stratified and fingerprint it (pure: no I/O).

`load_data` reads the configured source (sources.py) and prepares it; `prepare` takes any frame
(a DataFrame handed to the API too). Cleaning (`data.cleaning`), labels and classes, and the
scripts written without spaces are README "Labels, classes and cleaning" and "Scripts without
spaces".
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from textsweep.config import CLEANING_MODES, DataConfig, label_text
from textsweep.data.sources import load_source
from textsweep.errors import DataError

# Seed A's cleaning, quirks kept on purpose so results stay comparable with the notebook:
# `A-z` also keeps [ \ ] ^ _ and the backtick, and the apostrophe of Uzbek o' / g' is removed
# ("o'yin" -> "oyin").
SEED_A_STRIP = re.compile(r"[^a-zA-z0-9\s]")
SEED_A = "seed_a"
# Typed apostrophes: ’ and ‘ (phones, word processors), ʻ and ʼ (the official Uzbek Latin oʻ, gʻ
# and tutuq belgisi) and the backtick typed for them. Made one ', so that o‘yin, oʻyin and o'yin
# are one word: ʻ and ʼ are letters to Unicode (category Lm) and would make words of their own.
# (`_` is a word character to re's \w but joins words, as in snake_case: it becomes a space.)
APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bb\u02bc`"} | {"_": " "})
# Cleaning emptying more than this share of the texts means it does not suit their script.
MOST_TEXTS = 0.5
# What each data.cleaning mode keeps, for messages that suggest one.
CLEANING_KEEPS = {"unicode": "letters and digits of every script", "seed_a": "ASCII letters and digits only",
                  "none": "the text as given"}
# Scripts written without spaces between words. A space-separated "word" of theirs is a whole
# phrase that no other text repeats, so the word tokenizer reads them one character (with its
# combining marks) at a time, as BERT's tokenizer does for Chinese characters (README "Scripts
# without spaces"). Korean, Tibetan (its tsheg separates syllables) and the rest space their words.
UNSPACED_SCRIPTS = {
    "Han": "\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff",
    "Hiragana": "\u3041-\u309f",
    "Katakana": "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f",
    "Thai": "\u0e00-\u0e7f",
    "Lao": "\u0e80-\u0eff",
    "Khmer": "\u1780-\u17ff\u19e0-\u19ff",
    "Myanmar": "\u1000-\u109f\ua9e0-\ua9ff\uaa60-\uaa7f",
}


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: np.ndarray  # int64 indices into PreparedData.classes


@dataclass(frozen=True)
class PreparedData:
    """Cleaned, de-duplicated, stratified train/validation/test splits and their provenance."""

    train: Split
    val: Split
    test: Split
    fingerprint: str  # same rows in the same splits <=> same fingerprint
    source: str
    stats: dict[str, int]
    # The user's label values in class order (JSON-friendly: ints stay ints, strings stay
    # strings); label i is classes[i].
    classes: list[Any] = field(default_factory=lambda: [0, 1])
    cleaning: str = SEED_A  # the data.cleaning mode the texts went through
    # The scripts written without spaces (UNSPACED_SCRIPTS) that the texts use, most rows first.
    unspaced_scripts: tuple[str, ...] = ()

    def script_note(self) -> str | None:
        """What textsweep does about texts in scripts written without spaces, or None when there are none."""
        if not self.unspaced_scripts:
            return None
        rows, scripts = self.stats["unspaced_script_rows"], ", ".join(self.unspaced_scripts)
        return (
            f"data: {rows:,} of {self.stats['rows_used']:,} texts use {scripts} (written without spaces between "
            "words): the word tokenizer reads those characters one at a time (README: Scripts without spaces)"
        )

    def frame(self, split: str) -> pd.DataFrame:
        part: Split = getattr(self, split)
        return pd.DataFrame({"text": part.texts, "label": part.labels})


def clean_texts(texts: Iterable[str] | pd.Series, mode: str = SEED_A) -> pd.Series:
    """Texts cleaned by one `data.cleaning` mode; empty values become "".

    - `unicode`: letters, digits and combining marks of every script, lowercased, and apostrophes
      inside words (o'yin, don't; typed variants made '); everything else separates words.
    - `seed_a`: the notebook's rule, quirks kept: lowercase, then drop every character outside
      `[a-zA-z0-9\\s]`.
    - `none`: the texts as given.
    """
    texts = pd.Series(texts, dtype="object") if not isinstance(texts, pd.Series) else texts
    texts = texts.astype("string").fillna("")
    if mode == SEED_A:
        return texts.str.lower().str.replace(SEED_A_STRIP, "", regex=True)
    if mode == "unicode":
        return pd.Series([clean_unicode(text) for text in texts], index=texts.index, dtype="string")
    if mode == "none":
        return texts
    raise ValueError(f"unknown cleaning mode {mode!r}; use one of {', '.join(CLEANING_MODES)}")


# An apostrophe with a space or another apostrophe on either side (the text is padded with
# spaces) is a quote mark, not part of a word. Written to start with the apostrophe, so that re
# only tries it at apostrophes (~20x faster than a leading look-behind on IMDB).
LOOSE_APOSTROPHE = re.compile(r"'(?<=[\s']')|'(?=[\s'])")
NOT_ASCII_WORD = re.compile(r"[^a-z0-9'\s]+")


def clean_unicode(text: str) -> str:
    """`data.cleaning: unicode` for one text: words of any script, lowercased, single spaces.

    Keeping spaces out of the replaced runs and collapsing them afterwards is ~5x faster than
    matching words; ASCII texts (most English ones) take a plain-ASCII pattern.
    """
    if text.isascii():
        text = NOT_ASCII_WORD.sub(" ", text.replace("`", "'").lower())
    else:
        # NFKC: composed and decomposed accents, fullwidth forms and ligatures (ﬁ) become one spelling.
        text = unicodedata.normalize("NFKC", text).translate(APOSTROPHES).lower()
        text = not_unicode_word(astral=max(text) > "\uffff").sub(" ", text)
    if "'" in text:
        text = LOOSE_APOSTROPHE.sub(" ", f" {text} ")
    return " ".join(text.split())


@functools.cache
def not_unicode_word(astral: bool) -> re.Pattern[str]:
    """Runs of characters that are neither letters, digits, combining marks, apostrophes nor spaces.

    `\\w` alone is not enough: combining marks (Devanagari vowel signs, Arabic harakat, ...) are
    not word characters to `re` and would split words. Marks above U+FFFF are a separate pattern:
    a character class reaching there is matched ~2x slower, and few texts need it.
    """
    return re.compile(f"[^\\w{mark_ranges(sys.maxunicode if astral else 0xFFFF)}'\\s]+")


@functools.cache
def mark_ranges(limit: int) -> str:
    """The combining marks up to `limit` as a regex character-class body, from this Python's Unicode database (~0.2 s)."""
    marks, start = [], None
    for code in range(limit + 2):
        is_mark = code <= limit and unicodedata.category(chr(code)).startswith("M")
        if is_mark and start is None:
            start = code
        elif not is_mark and start is not None:
            marks.append(f"{chr(start)}-{chr(code - 1)}")
            start = None
    return "".join(marks)


@functools.cache
def unspaced_script_character() -> re.Pattern[str]:
    """One character of a script written without spaces, with the combining marks that follow it (Thai ที่)."""
    return re.compile(f"[{''.join(UNSPACED_SCRIPTS.values())}][{mark_ranges(0xFFFF)}]*")


def space_unspaced_scripts(text: str) -> str:
    """`text` with a space around each character of a script written without spaces (UNSPACED_SCRIPTS)."""
    return text if text.isascii() else unspaced_script_character().sub(r" \g<0> ", text)


def unspaced_scripts_of(texts: Iterable[str]) -> tuple[int, list[str]]:
    """How many `texts` use a script written without spaces, and those scripts, most texts first."""
    patterns = {name: re.compile(f"[{ranges}]") for name, ranges in UNSPACED_SCRIPTS.items()}
    texts_of_script, texts_of_any = dict.fromkeys(UNSPACED_SCRIPTS, 0), 0
    for text in texts:
        if not text.isascii() and unspaced_script_character().search(text):
            texts_of_any += 1
            for name, pattern in patterns.items():
                texts_of_script[name] += pattern.search(text) is not None
    most_first = sorted(UNSPACED_SCRIPTS, key=lambda name: -texts_of_script[name])
    return texts_of_any, [name for name in most_first if texts_of_script[name]]


def _plain(value: Any) -> Any:
    """A label value as plain JSON: bools stay bools, whole numbers become ints, others strings."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def _number(value: Any) -> Any:
    """A label as the number it is or spells (True is 1, "1.0" is 1), or as it is when it is no number."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return _plain(number) if math.isfinite(number) else value
    return int(value) if isinstance(value, bool) else value


def plain_labels(labels: pd.Series, cfg: DataConfig) -> pd.Series:
    """Each label as a plain value, one value per class whatever its type (README "Labels, classes and cleaning").

    Numbers are compared by value: 1.0 is 1. In a column that holds numbers, True and False are 1
    and 0, and a string that spells a number ("1", "1.0") is that number: a DataFrame or a CSV
    column mixing 1 and "1" has one class 1. Labels that still differ only by type (True and
    "True") are refused, unless data.label_map or data.classes (which match labels by their
    text) say which class each is.
    """
    values = labels.map(_plain)
    if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        values = values.map(_number)
    if cfg.label_map is not None or cfg.classes is not None:
        return values
    # Keyed by type and value: as dict keys, True and 1 would be one key.
    typed = {(type(v).__name__, v): v for v in values}
    by_text: dict[str, list[Any]] = {}
    for value in typed.values():
        by_text.setdefault(label_text(value), []).append(value)
    clash = next((same for same in by_text.values() if len(same) > 1), None)
    if clash:
        column = cfg.label_column
        shown = " and ".join(f"{v!r} ({type(v).__name__})" for v in sorted(clash, key=lambda v: type(v).__name__))
        raise DataError(
            f"label column {column!r} holds {shown}, labels that differ only by type: one class or two? Make the "
            f"column one type (e.g. frame[{column!r}] = frame[{column!r}].astype(str)), or set data.label_map, "
            "which matches labels by their text"
        )
    return values


def class_labels(labels: pd.Series, cfg: DataConfig) -> tuple[list[Any], np.ndarray]:
    """The classes in their fixed order, and each label as an int64 index into them.

    The order is `data.label_map`'s indices (class i named by its first key), `data.classes`,
    or else the label values sorted: a 0/1 column gives classes [0, 1] and labels unchanged.
    """
    column = cfg.label_column
    if labels.isna().any():
        raise DataError(f"label column {column!r} has {int(labels.isna().sum())} empty values; fill or drop those rows")
    values = plain_labels(labels, cfg)
    found = set(values)
    if cfg.label_map is not None:
        first_key = {}
        for key, index in cfg.label_map.items():
            first_key.setdefault(index, _plain(key))
        classes = [first_key[index] for index in range(len(first_key))]
        index_by_text = {label_text(key): index for key, index in cfg.label_map.items()}
        index_of = {label_text(value): index_by_text.get(label_text(value)) for value in found}
        unknown = sorted(text for text, index in index_of.items() if index is None)
        if unknown:
            raise DataError(
                f"label column {column!r} has values {unknown[:5]} that data.label_map "
                f"({cfg.label_map}) does not map; add them or fix the data"
            )
        return classes, values.map(lambda v: index_of[label_text(v)]).to_numpy(dtype=np.int64)
    if cfg.classes is not None:
        classes = [_plain(c) for c in cfg.classes]
        by_value = {c: i for i, c in enumerate(classes)}
        by_text = {str(c): i for i, c in enumerate(classes)}
        index_of = {v: by_value.get(v, by_text.get(str(v))) for v in found}
        unknown = sorted(str(v) for v, i in index_of.items() if i is None)
        if unknown:
            hint = " (YAML reads unquoted yes/no/true/false/on/off as booleans: quote them)" if any(
                isinstance(c, bool) for c in classes
            ) else ""
            raise DataError(
                f"label column {column!r} has values {unknown[:5]} that are not in data.classes "
                f"{classes}{hint}; add them to data.classes or fix the data"
            )
        return classes, values.map(index_of).to_numpy(dtype=np.int64)
    # Numbers (and booleans) before strings, so a column mixing both still has one order.
    classes = sorted(found, key=lambda v: (isinstance(v, str), v))
    index_of = {v: i for i, v in enumerate(classes)}
    return classes, values.map(index_of).to_numpy(dtype=np.int64)


def check_cleaning_keeps_texts(raw: pd.Series, cleaned: pd.Series, cfg: DataConfig) -> None:
    """Stop when `data.cleaning` empties most texts (it does not suit their script), naming the modes that keep them."""
    had_text = raw.astype("string").fillna("").str.strip().to_numpy() != ""
    if not had_text.sum() or emptied_share(cleaned[had_text]) <= MOST_TEXTS:
        return
    texts = raw[had_text]
    emptied = cleaned[had_text].str.strip().to_numpy() == ""
    # `none` keeps every text that has a character other than a space, so one mode always works.
    working = [mode for mode in CLEANING_MODES
               if mode != cfg.cleaning and emptied_share(clean_texts(texts, mode)) <= MOST_TEXTS]
    raise DataError(
        f"data.cleaning {cfg.cleaning!r} empties {int(emptied.sum()):,} of {len(texts):,} texts "
        f"(e.g. {str(texts[emptied].iloc[0])[:60]!r}); set data.cleaning to "
        + " or ".join(f"{mode} ({CLEANING_KEEPS[mode]})" for mode in working)
    )


def emptied_share(cleaned: pd.Series) -> float:
    return float(np.mean(cleaned.str.strip().to_numpy() == "")) if len(cleaned) else 0.0


def check_classes_fill_every_split(counts: np.ndarray, classes: list[Any], cfg: DataConfig) -> None:
    """Each class needs rows in train, validation and test: on average at least one in the smallest."""
    smallest = min(cfg.test_size, cfg.val_size)
    needed = max(3, math.ceil(1 / smallest - 1e-9))
    present = [(c, int(n)) for c, n in zip(classes, counts) if n > 0]
    if len(present) < 2:
        raise DataError(
            f"data source {cfg.source!r} has only one class ({', '.join(f'{c!r}: {n} row' + 's' * (n != 1) for c, n in present) or 'no rows'}) "
            f"after cleaning; a classifier needs at least 2 classes (check data.label_column {cfg.label_column!r})"
        )
    for name, count in zip(classes, counts):
        if count < needed:
            raise DataError(_too_small(name, int(count), needed, cfg))


def _too_small(name: Any, count: int, needed: int | None, cfg: DataConfig) -> str:
    need = f"needs at least {needed} rows" if needed else "is too small"
    return (
        f"class {name!r} has {count} row{'s' * (count != 1)} after cleaning and de-duplication; a class {need} "
        f"to appear in the train, validation and test splits (data.test_size {cfg.test_size}, data.val_size "
        f"{cfg.val_size}): add rows, merge or drop that class, or raise the split sizes"
    )


def prepare(table: pd.DataFrame, cfg: DataConfig) -> PreparedData:
    """Shuffle (seeded), limit, clean, drop empty texts, de-duplicate, then split stratified.

    De-duplication happens before the split so that no text sits in both train and test
    (seed A's split puts 213 of its 6,101 test rows in train).
    """
    for role, column in (("text", cfg.text_column), ("label", cfg.label_column)):
        if column not in table.columns:
            raise DataError(
                f"{role} column {column!r} not found in {cfg.source!r} (columns: {list(table.columns)}); "
                f"set data.{role}_column"
            )
    if table.empty:
        raise DataError(f"data source {cfg.source!r} has no rows")
    stats = {"rows": len(table)}
    table = table.sample(frac=1.0, random_state=cfg.seed)
    if cfg.limit is not None:
        table = table.head(cfg.limit)
    raw = table[cfg.text_column].reset_index(drop=True)
    cleaned = clean_texts(raw, cfg.cleaning)
    check_cleaning_keeps_texts(raw, cleaned, cfg)
    classes, labels = class_labels(table[cfg.label_column], cfg)
    frame = pd.DataFrame({"text": cleaned.to_numpy(), "label": labels})
    non_empty = frame[frame["text"].str.strip() != ""]
    unique = non_empty.drop_duplicates(subset="text", keep="first")
    stats |= {"empty_dropped": len(frame) - len(non_empty), "duplicates_dropped": len(non_empty) - len(unique)}
    stats["rows_used"] = len(unique)
    stats["unspaced_script_rows"], unspaced_scripts = unspaced_scripts_of(unique["text"])
    counts = np.bincount(unique["label"].to_numpy(dtype=np.int64), minlength=len(classes))
    check_classes_fill_every_split(counts, classes, cfg)
    if min(cfg.test_size, cfg.val_size) * len(unique) < 2:
        raise DataError(
            f"data source {cfg.source!r} has too few rows to split ({len(unique)} usable, "
            f"classes {dict(zip(classes, counts.tolist()))}); use more data or a larger data.limit"
        )
    texts, labels = unique["text"].tolist(), unique["label"].to_numpy()
    rest_x, test_x, rest_y, test_y = train_test_split(
        texts, labels, test_size=cfg.test_size, random_state=cfg.seed, stratify=labels
    )
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=cfg.val_size / (1 - cfg.test_size), random_state=cfg.seed, stratify=rest_y
    )
    splits = {"train": Split(train_x, train_y), "val": Split(val_x, val_y), "test": Split(test_x, test_y)}
    for index, name in enumerate(classes):
        if any(not np.any(split.labels == index) for split in splits.values()):
            # The stratified split rounds a small class down to no row in some split.
            raise DataError(_too_small(name, int(counts[index]), None, cfg))
    stats |= {f"{name}_rows": len(split.texts) for name, split in splits.items()}
    return PreparedData(
        **splits, fingerprint=fingerprint(splits), source=cfg.source, stats=stats, classes=classes, cleaning=cfg.cleaning,
        unspaced_scripts=tuple(unspaced_scripts),
    )


def fingerprint(splits: dict[str, Split]) -> str:
    """A short digest of every split's texts and labels, in order."""
    digest = hashlib.sha256()
    for name, split in splits.items():
        frame = pd.DataFrame({"text": split.texts, "label": split.labels})
        digest.update(name.encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def load_data(cfg: DataConfig) -> PreparedData:
    """`cfg.source` read (sources.load_source) and prepared."""
    return prepare(load_source(cfg), cfg)
