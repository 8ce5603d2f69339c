"""Memory of a tracked 10-trial sweep: peak RSS, and RSS growth from trial 1 to trial 10.

The sweep is textsweep's tracked KerasTuner search (`search.run_search` with the MLflow trial
observer: a nested run per trial with params, metrics, system metrics, tokenizer, logged model and
figure) under one sweep run, in a fresh local store in a temporary directory (MLFLOW_TRACKING_URI
unset). A small model on 3,000 Uzbek rows, 1 epoch per trial, random search over a small space so
that every trial builds a different model. An observer after the MLflow one reads the process's
RSS (psutil) at each trial's end, once the trial has been logged. Goal: flat, growth from trial 1
to the last < 5% (or < 50 MB). The ratio (RSS after the last trial / after trial 1) is printed last.

    python bench/memory_growth.py              # 10 trials, tracked
    python bench/memory_growth.py --untracked  # the same without MLflow
    python bench/memory_growth.py --smoke      # seconds: 2 trials, the fewest with a growth (CI)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchdata import data_source, scratch_directory, tracked_search  # noqa: E402
from textsweep.events import TrialEnd, TrialObserver  # noqa: E402

MB = 1024 * 1024


def sweep_config(trials: int, smoke: bool):
    from textsweep.config import parse_config

    source = data_source()
    defaults = {"max_features": 1000, "embed_dim": 32, "lstm_out": 32, "recurrent_dropout": 0.0, "epochs": 1,
                "batch_size": 64}
    if source == "imdb":
        defaults["maxlen"] = 100
    space = {
        "max_features": {"values": [500, 1000, 2000]},
        "embed_dim": {"min": 16, "max": 64, "step": 16},
        "lstm_out": {"min": 16, "max": 64, "step": 16},
        "dropout": {"min": 0.0, "max": 0.4, "step": 0.1},
        "batch_size": {"values": [32, 64, 128]},
    }
    return parse_config({"name": "bench-memory", "data": {"source": source, "limit": 600 if smoke else 3000},
                         "defaults": defaults,
                         "search": {"algorithm": "random", "max_trials": trials, "space": space}})


class RssAfterTrial(TrialObserver):
    """The process's resident memory at each trial's end; placed after the MLflow observer, so
    once the trial has been logged."""

    def __init__(self):
        import psutil

        self._process = psutil.Process()
        self.rss_after_trial: list[int] = []

    def trial_ends(self, event: TrialEnd) -> None:
        self.rss_after_trial.append(self._process.memory_info().rss)
        print(f"trial {len(self.rss_after_trial):2d} ({event.status}): RSS {self.rss_after_trial[-1] / MB:7.1f} MB", flush=True)


def run_sweep(config, encoded, directory: Path, tracked: bool) -> list[int]:
    """The RSS after each trial of the sweep."""
    from textsweep.search.tuner import build_tuner, fit_arguments

    rss = RssAfterTrial()
    if tracked:
        tracked_search(config, encoded, directory, observers=[rss])
    else:
        build_tuner(config, directory, observers=[rss], overwrite=True).search(encoded, **fit_arguments(config))
    return rss.rss_after_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small data, 2 trials")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--untracked", action="store_true", help="without MLflow")
    args = parser.parse_args()
    trials = 2 if args.smoke else args.trials

    workdir = scratch_directory(use_as_store=True)
    from textsweep.api import prepare_data
    from textsweep.tracking import connect

    connect()
    config = sweep_config(trials, args.smoke)
    _, encoded = prepare_data(config)
    rss = run_sweep(config, encoded, workdir / "tuner", tracked=not args.untracked)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    growth = rss[-1] - rss[0]
    print(f"data: {config.data.source}, {len(encoded.labels['train'])} training rows; {len(rss)} trials, "
          f"{'untracked' if args.untracked else 'tracked (MLflow, local SQLite store)'}")
    print(f"peak RSS {peak / MB:.0f} MB; RSS after trial 1 {rss[0] / MB:.1f} MB, after trial {len(rss)} "
          f"{rss[-1] / MB:.1f} MB: growth {growth / MB:+.1f} MB, {growth / len(rss[1:] or [1]) / MB:+.2f} MB per trial after the first")
    print(f"RSS growth ratio (after trial {len(rss)} / after trial 1, goal < 1.05 or < 50 MB growth): {rss[-1] / rss[0]:.4f}")


if __name__ == "__main__":
    sys.exit(main())
