"""The progress bar: one tqdm bar over the trial budget, and one line per finished trial; then,
when the sweep confirms its top trials (search.confirm), one bar over the further executions."""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

from tqdm.auto import tqdm

from textsweep.events import (
    ConfirmationEnd, ConfirmationStart, EpochEnd, ExecutionEnd, ExecutionEpochEnd, ExecutionStart, SearchEnd,
    SearchStart, TrialConfirmed, TrialEnd, TrialObserver, TrialStart,
)


class ProgressBar(TrialObserver):
    """An observer of the search: a bar over the trial budget, and a line per finished trial.

    `tqdm.auto` draws a widget in Jupyter and a bar on a terminal. `disable=None` is tqdm's own
    rule for anything else (a pipe, a CI log, a worker relayed by the chief): no bar, because a
    bar there is a carriage-return rewrite per refresh, which logs show as a flood. The line per
    finished trial (its params, score, time, best so far, ETA) is printed in every case, above
    the bar where there is one. `quiet` shows neither.
    """

    def __init__(self, *, quiet: bool = False, stream: Any = None):
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self._bar: Any = None
        self._trial_durations: list[float] = []

    def _say(self, line: str) -> None:
        if self.quiet:
            return
        tqdm.write(line, file=self.stream)  # above the bar, which is redrawn below it
        self.stream.flush()

    def _best(self, best: tuple[str, float] | None, named: bool = True) -> str:
        if best is None:
            return "best -"
        return f"best {self._objective + ' ' if named else ''}{best[1]:.4f} [{best[0]}]"

    def search_begins(self, event: SearchStart) -> None:
        self._objective, self._budget, self._deadline = event.objective, event.trial_budget, event.deadline
        terminal = shutil.get_terminal_size()
        self._bar = tqdm(
            total=event.trial_budget, initial=min(event.trials_done, event.trial_budget or event.trials_done),
            file=self.stream, disable=True if self.quiet else None,
            # shutil's size, not tqdm's own probe: a terminal that reports 0x0 (a bare pty in CI or
            # a container) gets 80x24, where tqdm would draw nothing at all.
            ncols=terminal.columns, nrows=terminal.lines, unit="trial", smoothing=0.3,
            bar_format="{desc} {percentage:3.0f}%|{bar:16}| [{elapsed}<{remaining}]{postfix}",
        )

    def search_ends(self, event: SearchEnd) -> None:
        self._bar.close()

    def trial_begins(self, trial: TrialStart) -> None:
        self._trial_started = time.monotonic()
        self._trial_progress = 0.0  # of this trial, in trials (one per epoch when it ends)
        self._params = " ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.values.items() if not k.startswith("tuner/")
        )
        # KerasTuner numbers trials from 0 in creation order, in one process or across workers.
        self._label = f"trial {int(trial.trial_id) + 1}/{self._budget or '?'}"
        self._bar.set_description_str(self._label, refresh=False)
        self._bar.set_postfix_str(f"starting | {self._best(trial.best, named=False)} | {self._params}")

    def epoch_ends(self, event: EpochEnd) -> None:
        trial = event.trial
        progress = (event.epoch + 1 - trial.first_epoch) / max(trial.epochs - trial.first_epoch, 1)
        value = event.logs.get(self._objective)
        shown = f" {self._objective} {value:.4f}" if value is not None else ""
        stopping = " | time budget reached, stopping" if event.out_of_time else ""
        self._bar.set_postfix_str(
            f"epoch {event.epoch + 1}/{trial.epochs}{shown} | {self._best(event.best, named=False)}{stopping} | {self._params}",
            refresh=False,
        )
        self._bar.update(progress - self._trial_progress)
        self._trial_progress = progress

    def trial_ends(self, event: TrialEnd) -> None:
        elapsed = time.monotonic() - self._trial_started
        self._trial_durations.append(elapsed)
        if event.status == "COMPLETED" and event.score is not None:
            outcome = f"{self._objective} {event.score:.4f}"
        else:
            outcome = f"{event.status}: {event.reason if event.message else '?'}"[:200]
        self._bar.update(1 - self._trial_progress)
        self._say(
            f"{self._label} {self._params} | done {outcome} in {tqdm.format_interval(elapsed)} | "
            f"{self._best(event.best)}{self._eta(event.trial.trial_id)}"
        )

    def _eta(self, trial_id: str) -> str:
        # Trial ids count every trial of the sweep, so this holds after a resume and across workers.
        if not self._budget:
            return ""
        remaining = max(self._budget - int(trial_id) - 1, 0)
        if not remaining:
            return ""
        eta = sum(self._trial_durations) / len(self._trial_durations) * remaining
        if self._deadline is not None:  # the wall-clock budget may end the sweep first
            eta = max(min(eta, self._deadline - time.time()), 0)
        return f" | ETA {tqdm.format_interval(eta)}"

    # ------------------------------------------------------------ confirmation (search.confirm)

    def confirmation_begins(self, event: ConfirmationStart) -> None:
        self._objective = event.objective
        self._say(f"confirming trials {', '.join(f'[{trial_id}]' for trial_id in event.trial_ids)} with {event.seeds} seeds each: "
                  f"{event.executions_left} further execution{'' if event.executions_left == 1 else 's'} to run")
        terminal = shutil.get_terminal_size()
        self._bar = tqdm(total=event.executions_left, file=self.stream, disable=True if self.quiet else None,
                         ncols=terminal.columns, nrows=terminal.lines, unit="execution",
                         bar_format="{desc} {percentage:3.0f}%|{bar:16}| [{elapsed}<{remaining}]{postfix}")

    def execution_begins(self, execution: ExecutionStart) -> None:
        self._execution_started = time.monotonic()
        self._execution_progress = 0.0
        self._label = f"trial [{execution.trial_id}] seed {execution.seed}"  # [id], as the best trial is shown
        self._bar.set_description_str(f"confirming {self._label}", refresh=False)
        self._bar.set_postfix_str("starting")

    def execution_epoch_ends(self, event: ExecutionEpochEnd) -> None:
        epochs = event.execution.trial.epochs
        value = event.logs.get(self._objective)
        shown = f" {self._objective} {value:.4f}" if value is not None else ""
        stopping = " | time budget reached, stopping" if event.out_of_time else ""
        self._bar.set_postfix_str(f"epoch {event.epoch + 1}/{epochs}{shown}{stopping}", refresh=False)
        progress = (event.epoch + 1) / max(epochs, 1)
        self._bar.update(progress - self._execution_progress)
        self._execution_progress = progress

    def execution_ends(self, event: ExecutionEnd) -> None:
        elapsed = time.monotonic() - self._execution_started
        self._bar.update(1 - self._execution_progress)
        outcome = (f"{self._objective} {event.score:.4f}" if event.status == "COMPLETED"
                   else f"{event.status}: {(event.message or '?').strip().splitlines()[-1]}"[:200])
        self._say(f"{self._label} | done {outcome} in {tqdm.format_interval(elapsed)}")

    def trial_confirmed(self, event: TrialConfirmed) -> None:
        self._say(f"trial [{event.trial_id}]: mean {self._objective} {event.mean:.4f} ± {event.std:.4f} "
                  f"over {len(event.scores)} seeds ({', '.join(f'{score:.4f}' for score in event.scores)})")

    def confirmation_ends(self, event: ConfirmationEnd) -> None:
        self._bar.close()
        if event.stopped_by_time:
            self._say(f"search.max_time ended confirmation after {event.executions_done} of "
                      f"{event.executions_planned} further executions")
