"""Training throughput of a textsweep trial against seed A's notebook code, in one process.

Seed A's notebook (../shared/SEEDS.md): a Keras `Sequential` fed padded numpy arrays and one-hot
labels through `model.fit(x, y, batch_size=32)`. textsweep: `model.fit_model`, the path every
trial and training run takes (a `tf.data` pipeline, validation in batches of 512, and by default
length-bucketed training batches with the padding masked). Same architecture, seed A's defaults
(recurrent_dropout 0.2), the same training and validation rows. Each arm's model is warmed up by
one untimed epoch; then the arms alternate, one epoch each per repeat, and the medians are
compared. An epoch here is one pass over the training rows of `--limit` rows of the data,
validation included.

Arms: seed A; textsweep's default params (length buckets, masked); textsweep with
`length_buckets: false` (seed A's computation: padded to maxlen, unmasked); length buckets
without the mask (what textsweep did before masking, to show the mask's cost); and the
recurrent_dropout 0 variants of seed A's code and of textsweep's default. Goal: textsweep default
params / seed A >= 2.0 samples/s. The ratio is printed last.

`--accuracy` measures instead what the default costs in accuracy: seed A's defaults trained 7
epochs on all rows with `length_buckets: false` (padded, unmasked) and with the default
(bucketed, masked), recurrent_dropout 0, per weight seed; best-epoch and last-epoch validation
accuracy compared (validation always padded to maxlen, as test and serving pad).

    python bench/throughput_vs_seed.py              # Uzbek set, 7,000 rows (~3,900 training rows), 4 repeats
    python bench/throughput_vs_seed.py --limit 0 --repeats 2   # full epochs of all 10,188 training rows (~6 min)
    python bench/throughput_vs_seed.py --accuracy   # instead: does the default cost validation accuracy?
                                                    # (~5 min per seed on a busy 2-core machine; --seeds 42 for one)
    python bench/throughput_vs_seed.py --smoke      # seconds: checks that the bench runs (CI), without the
                                                    # recurrent_dropout 0 arms (the same code as two others)

The data is benchdata.data_source(): TEXTSWEEP_BENCH_DATA, else ../shared/data/sentiment_uz.csv, else IMDB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchdata import seed_a_config  # noqa: E402


def sweep_config(smoke: bool, limit: int):
    return seed_a_config("bench-throughput", smoke=smoke, imdb_limit=6000, limit=limit)  # seed A's defaults


def seed_a_notebook(params, x_train, y_train, x_val, y_val, validation_batch_size=None):
    """Seed A's code, as the notebook writes it: padded arrays, one-hot labels, `model.fit`."""
    import keras

    keras.utils.set_random_seed(params.seed)
    model = keras.Sequential([
        keras.layers.Embedding(params.max_features, params.embed_dim),
        keras.layers.SpatialDropout1D(params.spatial_dropout),
        keras.layers.LSTM(params.lstm_out, dropout=params.dropout, recurrent_dropout=params.recurrent_dropout),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    y_train, y_val = keras.utils.to_categorical(y_train, 2), keras.utils.to_categorical(y_val, 2)

    def one_epoch():
        return model.fit(x_train, y_train, batch_size=params.batch_size, epochs=1, verbose=0,
                         validation_data=(x_val, y_val), validation_batch_size=validation_batch_size)

    return one_epoch


def textsweep_trial(params, encoded, model_params=None):
    """One epoch of `fit_model`; `model_params` builds the model from other params than it trains
    with (the unmasked model on length-bucketed batches: textsweep before masking)."""
    from textsweep.model import build_model, fit_model

    model = build_model(model_params or params)
    return lambda: fit_model(model, params, encoded, epochs=1)


ARMS = {False: "length_buckets false (padded, unmasked)", True: "default (length buckets, masked)"}


def accuracy_check(config, encoded, seeds: tuple[int, ...]) -> None:
    """Seed A's defaults for 7 epochs per seed, `length_buckets: false` (every batch padded to
    maxlen, unmasked: seed A) vs the default (bucketed, masked); validation always padded to maxlen,
    as test and serving pad. recurrent_dropout 0 keeps it short (padding and masking are what
    differ between the arms, not the kernel). The best-epoch ratio is printed last."""
    from textsweep.model import build_model, fit_model

    best: dict[bool, list[float]] = {False: [], True: []}
    last: dict[bool, list[float]] = {False: [], True: []}
    for seed in seeds:
        for buckets in (False, True):
            params = config.defaults.model_copy(update={"recurrent_dropout": 0.0, "length_buckets": buckets, "seed": seed})
            started = time.perf_counter()
            history = fit_model(build_model(params), params, encoded).history
            best[buckets].append(max(history["val_accuracy"]))
            last[buckets].append(history["val_accuracy"][-1])
            per_epoch = " ".join(f"{value:.4f}" for value in history["val_accuracy"])
            print(f"seed {seed} {ARMS[buckets]:40} best {best[buckets][-1]:.4f} last {last[buckets][-1]:.4f} "
                  f"(per epoch: {per_epoch}) {time.perf_counter() - started:.0f} s", flush=True)
    print(f"data: {config.data.source}, {len(encoded.labels['train'])} training rows, "
          f"{len(encoded.labels['val'])} validation rows; {config.defaults.epochs} epochs; seeds {seeds}")
    for name, values in (("best-epoch", best), ("last-epoch", last)):
        print(f"mean {name} val_accuracy: {ARMS[False]} {statistics.mean(values[False]):.4f}, "
              f"{ARMS[True]} {statistics.mean(values[True]):.4f}")
    print(f"last-epoch accuracy ratio (default / length_buckets false): "
          f"{statistics.mean(last[True]) / statistics.mean(last[False]):.4f}")
    print(f"accuracy ratio (default params / length_buckets false, mean best-epoch val_accuracy, goal >= 0.995): "
          f"{statistics.mean(best[True]) / statistics.mean(best[False]):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and model, one repeat, no warm-up nor recurrent_dropout 0 arms")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--limit", type=int, default=7000, help="rows of the data set used (before the split); 0 = all")
    parser.add_argument("--accuracy", action="store_true",
                        help="instead: all rows, 7 epochs, best- and last-epoch val_accuracy, length_buckets false vs default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7], help="weight seeds of --accuracy")
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats

    from textsweep.data import load_data
    from textsweep.text import encode_splits

    config = sweep_config(args.smoke, None if args.accuracy or args.limit == 0 else args.limit)
    encoded = encode_splits(load_data(config.data))
    if args.accuracy:
        accuracy_check(config, encoded, seeds=(42,) if args.smoke else tuple(args.seeds))
        return
    params = config.defaults
    maxlen = encoded.resolve_maxlen(params.max_features, params.maxlen)
    x_train, y_train = encoded.arrays("train", params.max_features, maxlen)
    x_val, y_val = encoded.arrays("val", params.max_features, maxlen)
    rows = len(y_train)
    fast = {"recurrent_dropout": 0.0}
    padded = params.model_copy(update={"length_buckets": False})
    arms = {
        "seed A notebook": seed_a_notebook(params, x_train, y_train, x_val, y_val),
        "textsweep default params": textsweep_trial(params, encoded),
        "textsweep, length_buckets false": textsweep_trial(padded, encoded),
        "textsweep, length buckets unmasked": textsweep_trial(params, encoded, model_params=padded),
    }
    if not args.smoke:  # --smoke only checks that the bench runs: the code of each arm once, no warm-up
        arms |= {
            "seed A notebook, recurrent_dropout 0": seed_a_notebook(params.model_copy(update=fast), x_train, y_train, x_val, y_val),
            "textsweep default params, recurrent_dropout 0": textsweep_trial(params.model_copy(update=fast), encoded),
        }
        for one_epoch in arms.values():  # graph tracing and kernel warm-up, untimed
            one_epoch()
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for repeat in range(repeats):
        for name, one_epoch in arms.items():
            started = time.perf_counter()
            one_epoch()
            seconds[name].append(time.perf_counter() - started)
            print(f"repeat {repeat + 1}/{repeats} {name:48} {seconds[name][-1]:7.2f} s", flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    base = median["seed A notebook"]
    print(f"data: {config.data.source}, {rows} training rows, {len(y_val)} validation rows, padded length {maxlen}; "
          f"params: {params.model_dump(include={'max_features', 'embed_dim', 'lstm_out', 'batch_size', 'recurrent_dropout', 'length_buckets'})}")
    for name, value in median.items():
        print(f"{name:48} {value:7.2f} s/epoch  {rows / value:8.0f} samples/s  x{base / value:.2f}")
    if not args.smoke:
        print(f"recurrent_dropout 0.2 vs 0, seed A notebook: {base:.2f} vs "
              f"{median['seed A notebook, recurrent_dropout 0']:.2f} s/epoch "
              f"(x{base / median['seed A notebook, recurrent_dropout 0']:.2f})")
    print(f"the mask's cost on length-bucketed batches (masked / unmasked s/epoch): "
          f"x{median['textsweep default params'] / median['textsweep, length buckets unmasked']:.2f}")
    print(f"default params / length_buckets false: x{median['textsweep, length_buckets false'] / median['textsweep default params']:.2f} samples/s")
    print(f"throughput ratio (textsweep default params / seed A notebook, samples/s, goal >= 2.0): "
          f"{base / median['textsweep default params']:.4f}")

if __name__ == "__main__":
    sys.exit(main())
