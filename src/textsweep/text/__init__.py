"""Texts to ids: one `Tokenizer` protocol, two kinds, and the splits encoded once per sweep.

tokenizer.py (the protocol, padding, load_tokenizer) <- word.py (seed A's Keras-Tokenizer word
ids) and subword.py (BPE pieces) <- encoded.py (EncodedSplits, the tf.data input pipeline).
Imports data (PreparedData, the unspaced-script rule), nothing above it.
"""

from textsweep.text.encoded import EncodedSplits, cap_ids, encode_splits
from textsweep.text.subword import SUBWORD_FORMAT, SubwordTokenizer, fit_subword
from textsweep.text.tokenizer import Tokenizer, load_tokenizer, pad
from textsweep.text.word import VOCABULARY_FORMAT, Vocabulary, fit_vocabulary, split_words

__all__ = [
    "SUBWORD_FORMAT",
    "VOCABULARY_FORMAT",
    "EncodedSplits",
    "SubwordTokenizer",
    "Tokenizer",
    "Vocabulary",
    "cap_ids",
    "encode_splits",
    "fit_subword",
    "fit_vocabulary",
    "load_tokenizer",
    "pad",
    "split_words",
]
