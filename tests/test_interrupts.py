"""Ctrl-C and SIGTERM: raised at once outside a search, only at a safe point inside one, at once if pressed twice.

Each check runs in a process of its own: signal handlers belong to a process's main thread.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import gc, signal, sys
from textsweep import interrupts
signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's Ctrl-C, also under a background suite

def where_raised(step):
    try:
        step()
    except KeyboardInterrupt as interrupt:
        return f"{type(interrupt).__name__} {interrupts.exit_code(interrupt)}"
    return "not raised"
"""


def run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "Exception ignored", no traceback
    return done.stdout.split("\n")[:-1]


@pytest.mark.parametrize("signum, raised", [("SIGINT", "KeyboardInterrupt 130"), ("SIGTERM", "Terminated 143")])
def test_outside_a_search_a_signal_raises_where_it_lands(signum, raised):
    assert run(f"""
        with interrupts.recorded(signal.SIGINT, signal.SIGTERM):
            print(where_raised(lambda: signal.raise_signal(signal.{signum})))
    """) == [raised]


def test_inside_a_search_a_signal_waits_for_a_safe_point():
    assert run("""
        def search():
            with interrupts.deferred():
                print(where_raised(lambda: signal.raise_signal(signal.SIGTERM)))  # in TensorFlow, say
                print(where_raised(lambda: None))
                print(where_raised(interrupts.raise_if_pending))  # before the next batch

        with interrupts.recorded(signal.SIGINT, signal.SIGTERM):
            print(where_raised(search))  # every safe point raises it until the job ends
    """) == ["not raised", "not raised", "Terminated 143", "Terminated 143"]


def test_a_second_signal_raises_at_once():
    assert run("""
        with interrupts.recorded(signal.SIGINT, signal.SIGTERM), interrupts.deferred():
            signal.raise_signal(signal.SIGINT)
            print(where_raised(lambda: signal.raise_signal(signal.SIGINT)))
            sys.exit(0)
    """) == ["KeyboardInterrupt 130"]


def test_a_signal_received_in_a_search_is_raised_as_it_ends_at_the_latest():
    assert run("""
        def search():
            with interrupts.deferred():
                signal.raise_signal(signal.SIGINT)
            print("after the search")

        with interrupts.recorded(signal.SIGINT, signal.SIGTERM):
            print(where_raised(search))
        print(where_raised(lambda: None), signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    """) == ["KeyboardInterrupt 130", "not raised True"]


def test_an_error_that_ends_the_job_while_a_signal_is_pending_is_reported_as_the_signal():
    """Measured: SIGTERM inside a C extension's import became "ImportError: initialization failed"."""
    assert run("""
        def job():
            try:
                signal.raise_signal(signal.SIGTERM)
            except KeyboardInterrupt:
                raise ImportError("initialization failed") from None

        def command():
            with interrupts.recorded(signal.SIGINT, signal.SIGTERM):
                job()

        print(where_raised(command))
    """) == ["Terminated 143"]


def test_an_interrupt_a_finalizer_drops_is_raised_at_the_next_safe_point_without_a_traceback():
    """Python prints "Exception ignored" and drops an exception raised in `__del__`."""
    assert run("""
        class Finalized:
            def __del__(self):
                signal.raise_signal(signal.SIGTERM)

        with interrupts.recorded(signal.SIGINT, signal.SIGTERM):
            print(where_raised(lambda: Finalized()))
            print(where_raised(interrupts.raise_if_pending))
    """) == ["not raised", "Terminated 143"]


def test_a_background_job_keeps_ignoring_ctrl_c_and_every_handler_is_put_back():
    assert run("""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # `cmd &` in a script
        with interrupts.recorded(signal.SIGINT, signal.SIGTERM):
            with interrupts.recorded(signal.SIGINT):  # the API inside the CLI
                print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
            print(where_raised(lambda: signal.raise_signal(signal.SIGINT)))
            print(where_raised(lambda: signal.raise_signal(signal.SIGTERM)))
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, sys.unraisablehook is sys.__unraisablehook__)
    """) == ["True False", "not raised", "Terminated 143", "True True"]
