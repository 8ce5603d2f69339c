"""Compatibility shim for models registered before textsweep.text existed: nothing in textsweep imports it.

A registered model carries its serving.py as code (MLflow models from code). The serving.py of
models registered before the tokenizers moved to textsweep.text runs
`from textsweep.vocab import Tokenizer, load_tokenizer`; loaded in a process that already
imported this textsweep, it must still find them. Those two names, and only those, are
re-exported. Use textsweep.text in new code.
"""

from textsweep.text import Tokenizer, load_tokenizer

__all__ = ["Tokenizer", "load_tokenizer"]
