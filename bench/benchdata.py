"""What every bench script shares: the data it measures on and a throw-away working directory."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# The Uzbek set beside the project (../shared/data), never copied into it; IMDB ships with a package.
UZ_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment_uz.csv"


def data_source() -> str:
    """Seed A's Uzbek reviews when present, else the embedded IMDB reviews."""
    return str(UZ_CSV) if UZ_CSV.is_file() else "imdb"


def scratch_directory(*, use_as_store: bool = False) -> Path:
    """A temporary directory removed at exit (trial checkpoints add up); optionally the cwd and
    default MLflow store (MLFLOW_TRACKING_URI unset), so a bench never writes into a real store."""
    workdir = Path(tempfile.mkdtemp(prefix="textsweep-bench-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    if use_as_store:
        os.chdir(workdir)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return workdir
