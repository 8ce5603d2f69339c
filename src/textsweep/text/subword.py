"""The subword tokenizer (`tokenizer: subword`): byte-pair encoding from the HF `tokenizers` library.

Word-level ids drop every word outside the vocabulary, and an agglutinative language such as
Uzbek writes one root in many forms (kitob, kitoblar, kitobingiz), with spelling variants on top.
BPE pieces cover unseen forms from the pieces of seen ones.

Fitted once per sweep, on the training split, with the largest `max_features` any trial may
ask for; a trial with a smaller `max_features` keeps the first pieces (`capped`). That is
exactly the tokenizer BPE would have trained at that size: BPE adds one merge at a time, most
frequent pair first, and a new piece's id is its merge's position, so the tokenizer trained to
size k is the first k ids and the merges that made them (tests/text/test_subword_tokenizer.py
checks it against training at k). Unlike word ids, pieces must be re-encoded per cap (fewer
merges split a word into more pieces); encoded.EncodedSplits does that once per max_features.

Ids: 0 is `[PAD]` (the padding the model masks), then the characters of the training split (at
most ALPHABET_LIMIT, the most frequent), then merged pieces. A character outside them is dropped,
as the word tokenizer drops unknown words. Texts are NFKC-normalised and lowercased, and `▁`
marks the start of each word (Metaspace), so `▁kitob` and the suffix `lar` are different pieces.

Saved as JSON, never pickled: `{"format": "textsweep.subword/1", "maxlen", "classes", "cleaning",
"tokenizer": <the HF tokenizer's own JSON>}`; `tokenizers.Tokenizer.from_str` reads the inner
object as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from textsweep.text.tokenizer import Tokenizer, fields_from_json, tokenizer_to_json

SUBWORD_FORMAT = "textsweep.subword/1"
PAD_TOKEN = "[PAD]"
# Characters kept as pieces: the most frequent ones. Every other character is dropped. Enough for
# a text set mixing scripts (the Uzbek set: Latin, Cyrillic, digits and punctuation, ~90).
ALPHABET_LIMIT = 300
# A pair seen once is a typo or a name more often than a piece worth an id.
MIN_PAIR_FREQUENCY = 2


@dataclass(frozen=True)
class SubwordTokenizer(Tokenizer):
    """A fitted BPE tokenizer with what serving needs beside it (the same fields as word.Vocabulary).

    `tokenizer_json` is the HF tokenizer's JSON (`tokenizers.Tokenizer.to_str()`); `maxlen` the padded
    length once a trial fixes it; `classes` the label values in class order; `cleaning` the
    `data.cleaning` mode its texts went through.
    """

    tokenizer_json: str
    maxlen: int | None = None
    classes: tuple[Any, ...] = (0, 1)
    cleaning: str = "unicode"

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer as HfTokenizer

        object.__setattr__(self, "_tokenizer", HfTokenizer.from_str(self.tokenizer_json))

    @property
    def size(self) -> int:
        """Ids in use, padding included: a `max_features` at or above this keeps every piece."""
        return self._tokenizer.get_vocab_size()  # type: ignore[attr-defined]

    def capped(self, max_features: int, maxlen: int | None = None) -> SubwordTokenizer:
        """The tokenizer BPE trains at `max_features` ids: the first ids and the merges that made them."""
        payload = json.loads(self.tokenizer_json)
        model = payload["model"]
        vocab = {piece: id_ for piece, id_ in model["vocab"].items() if id_ < max_features}
        merges = []
        for merge in model["merges"]:
            left, right = merge if isinstance(merge, list) else merge.split(" ", 1)  # both of tokenizers' formats
            if left + right not in vocab:
                break  # the first merge whose piece is past the cap: training at this size stops here
            merges.append(merge)
        payload["model"] = model | {"vocab": vocab, "merges": merges}
        payload["added_tokens"] = [token for token in payload.get("added_tokens", []) if token["id"] < max_features]
        return replace(self, tokenizer_json=json.dumps(payload, ensure_ascii=False), maxlen=maxlen)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """The piece ids of each text (characters outside the alphabet are dropped)."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)  # type: ignore[attr-defined]
        return [np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings]

    def pieces(self, text: str) -> list[str]:
        """How a text is split (for people reading a model's tokenizer)."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens  # type: ignore[attr-defined]

    def to_json(self) -> str:
        return tokenizer_to_json(self, SUBWORD_FORMAT, tokenizer=json.loads(self.tokenizer_json))

    @classmethod
    def from_json(cls, text: str) -> SubwordTokenizer:
        payload = fields_from_json(text, SUBWORD_FORMAT, "subword tokenizer")
        return cls(
            json.dumps(payload["tokenizer"], ensure_ascii=False),
            payload.get("maxlen"),
            classes=tuple(payload["classes"]),
            cleaning=payload["cleaning"],
        )


def fit_subword(texts: list[str], max_features: int, *, classes: tuple[Any, ...] = (0, 1), cleaning: str = "unicode") -> SubwordTokenizer:
    """Train BPE on `texts` up to `max_features` ids (fewer when the texts run out of repeated pairs)."""
    from tokenizers import Tokenizer as HfTokenizer
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    tokenizer = HfTokenizer(models.BPE())  # no unk token: unknown characters are dropped
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=max_features,
        special_tokens=[PAD_TOKEN],  # first, so it is id 0
        min_frequency=MIN_PAIR_FREQUENCY,
        limit_alphabet=ALPHABET_LIMIT,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    return SubwordTokenizer(tokenizer.to_str(), classes=tuple(classes), cleaning=cleaning)
