"""The labelled texts: read from their source, then cleaned, de-duplicated, split and fingerprinted.

sources.py reads `data.source` (the embedded reviews, a Hugging Face Hub file, a local table);
preparation.py turns a frame into PreparedData (pure). Imports only config and errors.
"""

from textsweep.data.preparation import (
    UNSPACED_SCRIPTS,
    PreparedData,
    Split,
    clean_texts,
    load_data,
    prepare,
    space_unspaced_scripts,
)
from textsweep.data.sources import download_from_hub, load_source, read_embedded_imdb, read_table

__all__ = [
    "UNSPACED_SCRIPTS",
    "PreparedData",
    "Split",
    "clean_texts",
    "download_from_hub",
    "load_data",
    "load_source",
    "prepare",
    "read_embedded_imdb",
    "read_table",
    "space_unspaced_scripts",
]
