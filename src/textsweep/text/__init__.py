# TEMPORARY (coordinator): stands in for helper A's package until the merge.
from textsweep.vocab import EncodedSplits, Tokenizer, Vocabulary, encode_splits, fit_vocabulary, load_tokenizer, split_words  # noqa
from textsweep.subword import SubwordTokenizer, fit_subword  # noqa
