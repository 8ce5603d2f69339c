"""Per-trial data preparation as a share of the trial's time, in one process.

The data is loaded, cleaned, split and encoded once per sweep; each trial then only caps word
ids at its `max_features` and pads: `EncodedSplits.resolve_maxlen` and `EncodedSplits.dataset`
(train and validation) in `model.fit_model`, plus the two `resolve_maxlen` calls of the MLflow
trial observer. That per-trial preparation is timed on its own (padded to maxlen and with length
buckets; the dearer counts) and compared with the time of a whole untracked KerasTuner trial at
seed A's defaults on its fast kernel (recurrent_dropout 0) for 2 epochs: a short trial, so the
share is an upper bound for the 7-epoch trials of a real sweep. Preparation and trials
alternate; medians are compared. Goal: share <= 1%. The ratio is printed last.

    python bench/data_prep_share.py            # Uzbek set, all rows, 3 repeats
    python bench/data_prep_share.py --smoke    # seconds: checks that the bench runs (CI)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchdata import scratch_directory, seed_a_config, untracked_trial_seconds  # noqa: E402


def sweep_config(smoke: bool):
    # seed A's model on its fused kernel
    return seed_a_config("bench-data-prep", smoke=smoke, imdb_limit=8000, recurrent_dropout=0.0, epochs=2,
                         smoke_defaults={"epochs": 1, "batch_size": 128})


def prepare_trial_data(encoded, params, length_buckets: bool) -> None:
    """What one trial does to the shared encoded data before training starts."""
    maxlen = encoded.resolve_maxlen(params.max_features, params.maxlen)  # fit_model
    encoded.dataset("train", params.max_features, maxlen, params.batch_size, shuffle=True, seed=params.seed,
                    length_buckets=length_buckets)
    encoded.dataset("val", params.max_features, maxlen, 512)
    for _ in range(2):  # the MLflow trial observer: run params at the start, vocabulary at the end
        encoded.resolve_maxlen(params.max_features, params.maxlen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and model, one repeat, no warm-up trial")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats

    from textsweep.data import load_data
    from textsweep.text import encode_splits

    workdir = scratch_directory()
    config = sweep_config(args.smoke)
    encoded = encode_splits(load_data(config.data))
    params = config.defaults
    prepare_trial_data(encoded, params, length_buckets=True)  # imports and first-call costs, untimed
    if not args.smoke:  # the smoke run only checks that the bench runs: its one timed trial is enough
        untracked_trial_seconds(config, encoded, workdir / "warmup")
    prep: dict[bool, list[float]] = {False: [], True: []}
    trials: list[float] = []
    for repeat in range(repeats):
        for length_buckets in (False, True):
            started = time.perf_counter()
            prepare_trial_data(encoded, params, length_buckets)
            prep[length_buckets].append(time.perf_counter() - started)
        trials.append(untracked_trial_seconds(config, encoded, workdir / f"t{repeat}"))
        print(f"repeat {repeat + 1}/{repeats} preparation {prep[False][-1] * 1000:7.1f} ms padded, "
              f"{prep[True][-1] * 1000:7.1f} ms length-bucketed; trial {trials[-1]:7.2f} s", flush=True)
    padded, bucketed, trial = statistics.median(prep[False]), statistics.median(prep[True]), statistics.median(trials)
    print(f"data: {config.data.source}, {len(encoded.labels['train'])} training rows; trial: seed A's defaults, "
          f"recurrent_dropout 0, {params.epochs} epochs, untracked")
    print(f"median per-trial preparation: padded {padded * 1000:.1f} ms, length-bucketed {bucketed * 1000:.1f} ms; "
          f"median trial {trial:.2f} s")
    print(f"data preparation share ratio (per-trial preparation / trial time, goal <= 0.01): {max(padded, bucketed) / trial:.4f}")


if __name__ == "__main__":
    sys.exit(main())
