"""MLflow's share of a trial: the same KerasTuner trial, tracked and untracked, in one process.

Tracked = textsweep's tracked search (`search.run_search` with `tracking.MlflowTrialObserver`:
nested run, params, per-epoch metrics, system metrics, tokenizer, best-epoch model via log_model,
learning-curve PNG); untracked = the same tuner without it. Runs alternate (untracked, tracked,
untracked, ...) so that machine noise hits both alike; the medians are compared. Goal: ratio <= 1.02.
The ratio is printed last.

Beside the wall times, the time spent inside the MLflow observer's methods (trial_begins,
epoch_ends, trial_ends) is summed per tracked trial: the MLflow work itself, which the machine
noise in the much longer training does not blur. Since the observer seam (issue 21) this no longer
includes KerasTuner's own bookkeeping (the oracle recording the trial, the tuner saving its state)
nor loading the best epoch's weights from the checkpoint: the tuner does both outside the
observers. BENCHMARKS.md section 6's figure was measured with them inside the timed hooks (an
upper bound); the MLflow work timed is otherwise the same.

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

from benchdata import scratch_directory, seed_a_config, tracked_search, untracked_trial_seconds  # noqa: E402
from textsweep.events import EpochEnd, TrialEnd, TrialStart  # noqa: E402
from textsweep.tracking import MlflowTrialObserver, connect  # noqa: E402


def sweep_config(smoke: bool):
    # seed A's model on its fused kernel
    return seed_a_config("bench-overhead", smoke=smoke, imdb_limit=4000, recurrent_dropout=0.0, epochs=3,
                         smoke_defaults={"epochs": 1, "batch_size": 128})


HOOK_SECONDS: list[float] = []  # time spent inside the MLflow observer's methods, per tracked trial


class TimedMlflowObserver(MlflowTrialObserver):
    """textsweep's MLflow trial observer, each method timed: a trial's MLflow work, summed."""

    def _timed(self, method, event) -> None:
        started = time.perf_counter()
        try:
            method(event)
        finally:
            HOOK_SECONDS[-1] += time.perf_counter() - started

    def trial_begins(self, trial: TrialStart) -> None:
        HOOK_SECONDS.append(0.0)
        self._timed(super().trial_begins, trial)

    def epoch_ends(self, event: EpochEnd) -> None:
        self._timed(super().epoch_ends, event)

    def trial_ends(self, event: TrialEnd) -> None:
        self._timed(super().trial_ends, event)


def timed_trial(config, encoded, directory: Path, tracked: bool) -> float:
    if not tracked:
        return untracked_trial_seconds(config, encoded, directory)
    started = time.perf_counter()
    tracked_search(config, encoded, directory, tracker_class=TimedMlflowObserver)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and model, one repeat, no warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats

    workdir = scratch_directory(use_as_store=True)
    from textsweep.api import prepare_data

    connect()
    config = sweep_config(args.smoke)
    _, encoded = prepare_data(config)
    if not args.smoke:  # the smoke run only checks that the bench runs: its one pair of trials is enough
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
    # The MLflow observer's methods only: KerasTuner's bookkeeping and the weights' reload are outside (docstring).
    hooks = statistics.median(HOOK_SECONDS)
    print(f"time inside the MLflow hooks per tracked trial (median): {hooks:.2f} s = {hooks / untracked:.2%} of an untracked trial")
    print(f"tracking overhead ratio (tracked / untracked, goal <= 1.02): {tracked / untracked:.4f}")


if __name__ == "__main__":
    sys.exit(main())
