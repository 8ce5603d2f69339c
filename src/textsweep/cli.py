"""`textsweep`: thin commands over the modules. TensorFlow is imported only by commands that need it."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from textsweep import __version__, interrupts
from textsweep.errors import OPTION_STYLE, TextsweepError

DEFAULT_SWEEP_FILE = "sweeps/quick.yaml"


def _quiet_libraries() -> None:
    # TensorFlow's C++ start-up chatter and MLflow's per-run INFO lines drown the progress lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # A few small artifacts are downloaded by promote and predict; MLflow's bars would outnumber the answer.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (MLflow sets its loggers' levels on import, so quieten them after)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(mlflow|keras)\.")


def cmd_train(args: argparse.Namespace) -> int:
    from textsweep.config import load_config

    config = load_config(args.config)
    _quiet_libraries()
    from textsweep import api

    result = api.train(config)
    print(f"training run {result.run_id} in experiment {config.name!r}: test_accuracy {result.metrics['test_accuracy']:.4f}")
    print(api.where_to_browse(result.experiment_id))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from textsweep.config import load_config

    config = load_config(args.config)
    _quiet_libraries()
    from textsweep import api

    try:
        # The file, not the loaded config: with a remote store the tuner state lives beside it.
        result = api.sweep(args.config, quiet=args.quiet, restart=args.restart, workers=args.workers)
    except KeyboardInterrupt as interrupt:
        print(
            f"\nsweep {config.name!r} interrupted: the running trial's run is KILLED, finished trials are kept.\n"
            f"resume with the same command: textsweep sweep --config {args.config}",
            file=sys.stderr,
        )
        return interrupts.exit_code(interrupt)
    if result.role.startswith("worker"):
        print(f"{result.role}: no trial left, done after {result.elapsed_s / 60:.1f} min")
        return 0
    table = result.leaderboard
    print(f"\nsweep run {result.sweep_run_id} in experiment {config.name!r}: "
          f"{len(table)} finished trials in {result.elapsed_s / 60:.1f} min" + (" (resumed)" if result.resumed else ""))
    if not table.empty:
        print("top trials:")
        print(api.leaderboard_text(table, config.search.objective, 5))
    accuracy, chosen = api.chosen_accuracy(table)
    print(api.versus_reference(result.reference, accuracy, model=chosen))
    if result.stop_reason:
        print(result.stop_reason)
    if result.confirmation:
        print(result.confirmation)
    print(api.where_to_browse(result.experiment_id))
    if config.search.promote:
        print(result.promote().summary())
    return 0 if not table.empty else 1


def cmd_promote(args: argparse.Namespace) -> int:
    from textsweep.config import load_config

    config = load_config(args.config)
    _quiet_libraries()
    from textsweep import api

    print(api.promote(config, sweep_run_id=args.sweep_run_id).summary())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from textsweep import api

    predictions = api.load_model(args.model).predict(args.texts)
    width = max(5, *(len(str(label)) for label in predictions["label"]))
    print(f"{'label':>{width}}  probability  text")
    for row in predictions.itertuples(index=False):
        print(f"{str(row.label):>{width}}  {row.probability:>11.4f}  {row.text}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from textsweep import api

    sweep, table, reference = api.sweep_runs(args.name, args.sweep_run_id)  # reads the store, never creates one
    print(f"sweep run {sweep.info.run_id} ({sweep.info.status}) of experiment {args.name!r}: {len(table)} finished trials")
    if "data_classes" in sweep.data.params:
        print(f"classes (label names, in output order): {sweep.data.params['data_classes']}")
    if not table.empty:
        print(api.leaderboard_text(table, sweep.data.params.get("objective", "val_accuracy"), args.top))
    accuracy, chosen = api.chosen_accuracy(table)
    print(api.versus_reference(reference, accuracy, model=chosen))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from textsweep.config import load_config, value_text

    config = load_config(args.file)
    print(config.to_yaml(), end="")
    for name, default in config.widened_space.items():
        print(f"# search.space.{name} was widened to hold its default {value_text(default)}: every sweep runs "
              "`defaults` as trial 0")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textsweep",
        description="Hyperparameter sweeps for LSTM text classifiers with KerasTuner, tracked in MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"textsweep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the sweep file's `defaults` once, tracked in MLflow")
    train.add_argument("--config", default=DEFAULT_SWEEP_FILE, help=f"sweep file (default: {DEFAULT_SWEEP_FILE})")
    train.set_defaults(handler=cmd_train)

    sweep = commands.add_parser("sweep", help="run or resume a KerasTuner search, one MLflow run per trial")
    sweep.add_argument("--config", default=DEFAULT_SWEEP_FILE, help=f"sweep file (default: {DEFAULT_SWEEP_FILE})")
    sweep.add_argument("--quiet", action="store_true", help="no live progress lines (for CI logs)")
    sweep.add_argument("--restart", action="store_true", help="discard this sweep's saved tuner state and start over")
    sweep.add_argument(
        "--workers", type=int, default=0, metavar="N",
        help="run N local worker processes on KerasTuner's distributed oracle, this process as chief "
        "(one GPU per worker when GPUs exist)",
    )
    sweep.set_defaults(handler=cmd_sweep)

    promote = commands.add_parser(
        "promote", help="choose among the best trial, the linear reference and their blend on validation, register the winner, move the alias if it wins on test"
    )
    promote.add_argument("--config", default=DEFAULT_SWEEP_FILE, help=f"sweep file (default: {DEFAULT_SWEEP_FILE})")
    promote.add_argument(
        "--sweep-run-id", default=None, help="sweep run to promote from (default: the experiment's latest finished sweep)"
    )
    promote.set_defaults(handler=cmd_promote)

    predict = commands.add_parser("predict", help="label raw texts with a registered model")
    predict.add_argument("--model", required=True, help="model URI, e.g. models:/uz-sentiment@champion")
    predict.add_argument("texts", nargs="+", metavar="TEXT", help="raw texts to label (quote each one)")
    predict.set_defaults(handler=cmd_predict)

    runs = commands.add_parser("runs", help="print a sweep's leaderboard from MLflow")
    runs.add_argument("name", help="the sweep's name (its MLflow experiment)")
    runs.add_argument("--sweep-run-id", help="a given sweep run (default: the latest)")
    runs.add_argument("--top", type=int, default=20, help="how many trials to show (default 20)")
    runs.set_defaults(handler=cmd_runs)

    sweeps = commands.add_parser("sweeps", help="inspect sweep files")
    sweeps_commands = sweeps.add_subparsers(dest="sweeps_command", required=True)
    show = sweeps_commands.add_parser("show", help="print a sweep file with every default filled in")
    show.add_argument("file", type=Path)
    show.set_defaults(handler=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the process's own command line
        # Python weighs a full garbage collection every ~70,000 new objects; while TensorFlow,
        # Keras and MLflow import their ~650,000, that is ~10 full collections walking them all,
        # ~1.2 s of every command (BENCHMARKS.md, section 11). Every ~700,000 instead: young
        # objects are still collected at the usual pace, and KerasTuner collects fully every trial.
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, 100)
    args = build_parser().parse_args(argv)
    style = OPTION_STYLE.set("cli")  # errors name flags (--restart), not the API's keyword arguments
    try:
        # SIGTERM (kill, timeout, docker stop, schedulers) ends a job as Ctrl-C does: its runs end
        # KILLED and the same command resumes it.
        with interrupts.recorded(signal.SIGINT, signal.SIGTERM):
            return args.handler(args)
    except TextsweepError as exc:
        print(f"textsweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print("\ntextsweep: interrupted", file=sys.stderr)
        return interrupts.exit_code(interrupt)
    finally:
        OPTION_STYLE.reset(style)
        if argv is None:  # the process's own command line: it exits next
            # The interpreter's shutdown runs full garbage collections over every object that
            # TensorFlow, Keras and MLflow hold: ~2 s after a sweep, measured. Frozen, they are
            # skipped and the process ends at once; atexit handlers (MLflow's) still run.
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
