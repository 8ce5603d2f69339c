"""Word vs subword tokenizer, same model: test accuracy on the texts as written and with typos.

The subword tokenizer (`tokenizer: subword`, BPE from HF `tokenizers`) is meant for real user
text: an unseen word form or a typo still gets pieces, where the word tokenizer drops the word.
This bench trains the same params once per tokenizer (and per subword `max_features`) on the
same split, keeps each run's best-epoch weights (early stopping on val_accuracy, as a trial),
and scores the raw test texts through the serving code twice: as written, and with typos
(`with_typos`: about one word in four of 4+ characters gets one deleted, doubled or swapped
inner character, seeded). Prints val and test accuracy, test accuracy with typos, and seconds
per epoch; the ratio printed last is the best subword arm's test accuracy with typos / the word
arm's.

    python bench/subword_vs_word.py            # Uzbek set, the params below (~5 min on 2 cores)
    python bench/subword_vs_word.py --smoke    # seconds: checks that the bench runs (CI)

The data is benchdata.data_source(): TEXTSWEEP_BENCH_DATA, else ../shared/data/sentiment_uz.csv, else IMDB.
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchdata import seed_a_config  # noqa: E402

# The champion of the one-hour Uzbek sweep (BENCHMARKS.md section 8, trial 38), with its word
# vocabulary (all 22,527 words) against subword vocabularies of several sizes.
PARAMS = {"embed_dim": 128, "lstm_out": 140, "spatial_dropout": 0.3, "dropout": 0.1, "recurrent_dropout": 0.0,
          "batch_size": 32, "learning_rate": 0.0006128, "bidirectional": True, "epochs": 7}
WORD_MAX_FEATURES = 24000
SUBWORD_MAX_FEATURES = (4000, 8000, 16000)
TYPO_RATE = 0.25


def with_typos(text: str, rng: random.Random, rate: float = TYPO_RATE) -> str:
    """`text` with one inner-character typo in about `rate` of its words of 4+ characters."""
    words = text.split(" ")
    for index, word in enumerate(words):
        if len(word) < 4 or rng.random() >= rate:
            continue
        at = rng.randrange(1, len(word) - 1)  # inner characters: the first and last stay
        edit = rng.choice(("delete", "double", "swap"))
        if edit == "delete":
            words[index] = word[:at] + word[at + 1:]
        elif edit == "double":
            words[index] = word[:at] + word[at] + word[at:]
        else:
            words[index] = word[:at - 1] + word[at] + word[at - 1] + word[at + 1:]
    return " ".join(words)


def run_arm(config, encoded, data, typo_texts, tokenizer: str, max_features: int) -> dict:
    import keras
    import numpy as np

    from textsweep.model import build_model, fit_model
    from textsweep.serving import class_probabilities

    params = config.defaults.model_copy(update={"tokenizer": tokenizer, "max_features": encoded.cap_max_features(max_features, tokenizer)})
    view = encoded.for_tokenizer(tokenizer, params.max_features)
    maxlen = view.resolve_maxlen(params.max_features, params.maxlen)
    model = build_model(params, len(data.classes))
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=2, restore_best_weights=True)
    started = time.perf_counter()
    history = fit_model(model, params.model_copy(update={"maxlen": maxlen}), view, callbacks=[stop])
    epochs = len(history.history["loss"])
    seconds_per_epoch = (time.perf_counter() - started) / epochs
    served = view.vocabulary.capped(params.max_features, maxlen)  # what the trial logs and serving loads
    labels = np.asarray(data.test.labels)

    def accuracy(texts: list[str]) -> float:
        return float(np.mean(class_probabilities(model, served, texts).argmax(axis=1) == labels))

    return {"tokenizer": tokenizer, "max_features": params.max_features, "maxlen": maxlen, "epochs": epochs,
            "val_accuracy": max(history.history["val_accuracy"]), "test_accuracy": accuracy(data.test.texts),
            "typo_test_accuracy": accuracy(typo_texts), "s_per_epoch": seconds_per_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and model, one subword size")
    args = parser.parse_args()

    from textsweep.data import load_data
    from textsweep.text import encode_splits

    params = dict(PARAMS) | ({"epochs": 1} if args.smoke else {})
    config = seed_a_config("bench-subword", smoke=args.smoke, imdb_limit=6000, **params)
    if config.data.source.endswith("sentiment_uz.csv"):  # sweeps/uz.yaml's split (its cleaning decides the rows)
        config = config.model_copy(update={"data": config.data.model_copy(update={"cleaning": "seed_a"})})
    word_size, subword_sizes = (300, (300,)) if args.smoke else (WORD_MAX_FEATURES, SUBWORD_MAX_FEATURES)
    data = load_data(config.data)
    rng = random.Random(7)
    typo_texts = [with_typos(text, rng) for text in data.test.texts]
    encoded = encode_splits(data, subword_size=max(subword_sizes))
    print(f"data {config.data.source} (fingerprint {data.fingerprint}): {len(data.train.texts)} train / {len(data.val.texts)} val / "
          f"{len(data.test.texts)} test rows; params {params}")
    arms = [run_arm(config, encoded, data, typo_texts, "word", word_size)]
    arms += [run_arm(config, encoded, data, typo_texts, "subword", size) for size in subword_sizes]
    print(f"{'tokenizer':<9} {'max_feat':>8} {'maxlen':>6} {'epochs':>6} {'val_acc':>7} {'test_acc':>8} {'typo_test':>9} {'s/epoch':>7}")
    for arm in arms:
        print(f"{arm['tokenizer']:<9} {arm['max_features']:>8} {arm['maxlen']:>6} {arm['epochs']:>6} {arm['val_accuracy']:>7.4f} "
              f"{arm['test_accuracy']:>8.4f} {arm['typo_test_accuracy']:>9.4f} {arm['s_per_epoch']:>7.1f}")
    word, best = arms[0], max(arms[1:], key=lambda arm: arm["val_accuracy"])
    print(f"best subword arm by val_accuracy: max_features {best['max_features']}; test accuracy with typos, "
          f"subword / word: {best['typo_test_accuracy']:.4f} / {word['typo_test_accuracy']:.4f}, "
          f"ratio {best['typo_test_accuracy'] / word['typo_test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
