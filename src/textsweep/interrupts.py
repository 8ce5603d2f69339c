"""Ctrl-C and SIGTERM that end a job cleanly: its runs KILLED, its store and its process sound.

Python raises KeyboardInterrupt wherever the main thread is when the signal comes. In a sweep
that is mostly inside TensorFlow, an MLflow write or an import, and an exception there breaks
them. Measured (`textsweep sweep`, SIGTERM as a trial started: 6 of 85 went wrong; at a random
moment of its first 12 s: 2 of 60):
- TensorFlow turned it into an error of its own (AssertionError "Nesting violated for default
  stack", TypeError, SystemError "bad argument to internal function"); KerasTuner recorded that
  as the trial's failure and the search went on: the signal was lost;
- it left a SQLite transaction open: ending the runs KILLED failed with "database is locked";
- it left an import lock held: MLflow's system-metrics thread waited for it, and the sweep waited
  for that thread as it ended its run, for ever;
- it landed in `mlflow.start_run` of a trial or of the reference: that run stayed RUNNING;
- it landed in a C extension's import: "ImportError: initialization failed", a traceback.
So inside `deferred()` (a sweep or a training job from the store's opening on, every fit) a
signal is only recorded, and the code raises it at its safe points (`raise_if_pending`: before
every batch, as a trial starts and ends, in the chief's loop, as a block ends): in milliseconds
to seconds. A second signal raises at once, wherever it lands. Elsewhere (reading the data,
promote, predict) a signal raises where it lands, as Python's does; an error that then ends the
command is reported as the signal. Python's signal module has no deferral of its own, and no
library here offers one.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that a job ends the same way."""

    signum = signal.SIGTERM


_RAISED = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}
_pending: signal.Signals | None = None  # the signal received and not yet seen to end the job
_depth = 0  # `recorded` blocks entered: the outermost clears the record and owns the unraisable hook
_deferring = 0  # `deferred` blocks entered


def _on_signal(signum: int, frame: Any) -> None:
    global _pending
    first = _pending is None
    _pending = signal.Signals(signum)
    if _deferring and first:
        return  # raised at the next safe point
    raise _RAISED[_pending](f"signal {_pending.name}")


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, the shell's convention: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def raise_if_pending(cause: BaseException | None = None) -> None:
    """A safe point: raise the signal received while deferred, or one that a library dropped."""
    if _pending is not None:
        raise _RAISED[_pending](f"signal {_pending.name}") from cause


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While inside, a first signal is only recorded, for `raise_if_pending`; raised as the block
    ends at the latest. Without `recorded` around it, signals keep Python's behaviour."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    raise_if_pending()


@contextlib.contextmanager
def recorded(*signums: signal.Signals) -> Iterator[None]:
    """While inside, each of `signums` raises its KeyboardInterrupt (deferred in `deferred()`) and
    is recorded.

    Only in the main thread (the only one Python lets set handlers). SIGINT is taken only where
    Python's own Ctrl-C handler is installed: a job started in the background ignores it, and a
    notebook kernel's own handler stays. Nested uses (the CLI around the API) share the outer one.
    """
    global _pending, _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    taken = {}
    for signum in signums:
        current = signal.getsignal(signum)
        if current is _on_signal or (signum == signal.SIGINT and current is not signal.default_int_handler):
            continue
        taken[signum] = signal.signal(signum, _on_signal)
    outermost, previous_hook = _depth == 0, sys.unraisablehook
    if outermost:
        _pending = None
        sys.unraisablehook = _quiet_about_interrupts(previous_hook)
    _depth += 1
    try:
        yield
    except Exception as error:
        # An error that ends the job while a signal is pending is the signal's doing: an import it
        # broke (measured: "ImportError: initialization failed"), an error a library made of it.
        raise_if_pending(error)
        raise
    finally:
        _depth -= 1
        for signum, previous in taken.items():
            signal.signal(signum, previous)
        if outermost:
            sys.unraisablehook = previous_hook
            _pending = None


def _quiet_about_interrupts(hook: Any) -> Any:
    """The unraisable hook without the "Exception ignored ... KeyboardInterrupt" traceback of an
    interrupt that a finalizer dropped: it is raised again at the next safe point."""

    def quiet(unraisable: Any) -> None:
        if _pending is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        hook(unraisable)

    return quiet
