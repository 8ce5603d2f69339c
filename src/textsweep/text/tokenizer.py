"""What a trial's tokenizer is, whichever kind: the `Tokenizer` protocol, the code both kinds share, and loading.

Two kinds satisfy it: word.Vocabulary (seed A's Keras-Tokenizer word ids) and
subword.SubwordTokenizer (BPE pieces). Both are fitted once per sweep on the training split,
capped per trial (`capped`), and saved as JSON in their own format, which `load_tokenizer`
tells apart. Both subclass the protocol, to share `encode_padded` (and `pad`); the fields every
kind's JSON carries are written and read here (`tokenizer_to_json`, `fields_from_json`).
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Tokenizer(Protocol):
    """Texts to ids for one model: what training, logging and serving call on a tokenizer of either kind.

    `maxlen` is the padded length once a trial fixes it; `classes` the label values in class
    order (model output i is classes[i]); `cleaning` the `data.cleaning` mode its texts went
    through (data.clean_texts), so a served model cleans and labels text as its trial was trained.
    """

    @property
    def maxlen(self) -> int | None: ...

    @property
    def classes(self) -> tuple[Any, ...]: ...

    @property
    def cleaning(self) -> str: ...

    @property
    def size(self) -> int:
        """Ids in use, padding (id 0) included: a `max_features` at or above this keeps every id."""
        ...

    def capped(self, max_features: int, maxlen: int | None = None) -> Tokenizer:
        """The tokenizer a model with `Embedding(max_features, ...)` sees, padded to `maxlen`."""
        ...

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """The ids of each text (int32), unpadded; what the tokenizer does not know is dropped."""
        ...

    def to_json(self) -> str:
        """The tokenizer as JSON (never a pickle), with a `format` that `load_tokenizer` reads."""
        ...

    def encode_padded(self, texts: list[str]) -> np.ndarray:
        """Encode and pad to this tokenizer's `maxlen` (what serving feeds the model)."""
        if self.maxlen is None:
            raise ValueError("this tokenizer has no maxlen; cap it with a maxlen first")
        return pad(self.encode(texts), self.maxlen)


def pad(sequences: list[np.ndarray], maxlen: int) -> np.ndarray:
    """Pre-pad and pre-truncate with 0 to `maxlen`, as seed A's `pad_sequences` call did."""
    from keras.utils import pad_sequences  # deferred: importing Keras costs seconds

    return pad_sequences(sequences, maxlen=maxlen, padding="pre", truncating="pre", value=0)


def tokenizer_to_json(tokenizer: Tokenizer, format_: str, /, **fields: Any) -> str:
    """`tokenizer` as JSON: its `format`, the fields every kind carries, then its kind's own `fields`."""
    common = {"format": format_, "maxlen": tokenizer.maxlen, "classes": list(tokenizer.classes),
              "cleaning": tokenizer.cleaning}
    return json.dumps(common | fields, ensure_ascii=False)


def fields_from_json(text: str, format_: str, kind: str) -> dict[str, Any]:
    """The fields of a tokenizer JSON saved in `format_`; a ValueError naming `kind` for any other format."""
    payload = json.loads(text)
    if payload.get("format") != format_:
        raise ValueError(f"not a textsweep {kind} (format {payload.get('format')!r})")
    return payload


def load_tokenizer(text: str) -> Tokenizer:
    """A saved tokenizer JSON of either kind, by its `format`."""
    # Deferred: both kinds import this module for the protocol.
    from textsweep.text.subword import SUBWORD_FORMAT, SubwordTokenizer
    from textsweep.text.word import Vocabulary

    if json.loads(text).get("format") == SUBWORD_FORMAT:
        return SubwordTokenizer.from_json(text)
    return Vocabulary.from_json(text)
