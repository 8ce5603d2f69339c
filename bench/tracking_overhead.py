"""MLflow's share of a trial: the same KerasTuner trial, tracked and untracked, in one process.

Tracked = textsweep's TrialTracking mixin (nested run, params, per-epoch metrics, system
metrics, tokenizer, best-epoch model via log_model, learning-curve PNG); untracked = the same
tuner without it. Runs alternate (untracked, tracked, untracked, ...) so that machine noise hits
both alike; the medians are compared. Goal: ratio <= 1.02. The ratio is printed last.

    python bench/tracking_overhead.py            # seed A's model, recurrent_dropout 0, on the Uzbek set
    python bench/tracking_overhead.py --smoke    # seconds: checks that the bench runs (CI)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchdata import scratch_directory, seed_a_config, untracked_trial_seconds  # noqa: E402


def sweep_config(smoke: bool):
    # seed A's model on its fused kernel
    return seed_a_config("bench-overhead", smoke=smoke, imdb_limit=4000, recurrent_dropout=0.0, epochs=3,
                         smoke_defaults={"epochs": 1, "batch_size": 128})


HOOK_SECONDS: list[float] = []  # time spent inside the MLflow hooks, per tracked trial


class TimedHooks:
    """Tuner mixin placed before TrialTracking: times the MLflow work of each hook directly, a
    measure that machine noise in the much longer training does not blur."""

    def _timed(self, hook, *args, **kwargs):
        started = time.perf_counter()
        try:
            return hook(*args, **kwargs)
        finally:
            HOOK_SECONDS[-1] += time.perf_counter() - started

    def on_trial_begin(self, trial):
        HOOK_SECONDS.append(0.0)
        self._timed(super().on_trial_begin, trial)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        self._timed(super().on_epoch_end, trial, model, epoch, logs=logs)

    def on_trial_end(self, trial):
        self._timed(super().on_trial_end, trial)


def timed_trial(config, encoded, directory: Path, tracked: bool) -> float:
    import mlflow

    from textsweep.jobs import search
    from textsweep.tracking import TrialContext, experiment_id

    started = time.perf_counter()
    if tracked:
        client = mlflow.MlflowClient()
        experiment = experiment_id(client, config.name)
        with mlflow.start_run(experiment_id=experiment, run_name="bench-sweep") as sweep_run:
            context = TrialContext(experiment, encoded, config.search.objective, sweep_run.info.run_id)
            search(config, directory, context, mixins=(TimedHooks,), overwrite=True)
        return time.perf_counter() - started
    return untracked_trial_seconds(config, encoded, directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and model, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats

    workdir = scratch_directory(use_as_store=True)
    from textsweep.jobs import prepare_data
    from textsweep.tracking import connect

    connect()
    config = sweep_config(args.smoke)
    _, encoded = prepare_data(config)
    timed_trial(config, encoded, workdir / "warmup", tracked=False)  # TF graph and kernel warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(repeats):
        for tracked in (False, True):
            seconds = timed_trial(config, encoded, workdir / f"t{repeat}{tracked}", tracked)
            times[tracked].append(seconds)
            print(f"repeat {repeat + 1}/{repeats} {'tracked  ' if tracked else 'untracked'} {seconds:7.2f} s", flush=True)
    untracked, tracked = statistics.median(times[False]), statistics.median(times[True])
    print(f"data: {config.data.source}; defaults: {config.defaults.model_dump(include={'max_features', 'embed_dim', 'lstm_out', 'epochs', 'batch_size', 'recurrent_dropout'})}")
    print(f"median trial: untracked {untracked:.2f} s, tracked {tracked:.2f} s, MLflow adds {tracked - untracked:+.2f} s")
    # The base tuner's own on_trial_end (oracle bookkeeping) is inside the timed hook too: an upper bound.
    hooks = statistics.median(HOOK_SECONDS)
    print(f"time inside the MLflow hooks per tracked trial (median): {hooks:.2f} s = {hooks / untracked:.2%} of an untracked trial")
    print(f"tracking overhead ratio (tracked / untracked, goal <= 1.02): {tracked / untracked:.4f}")


if __name__ == "__main__":
    sys.exit(main())
