"""Errors a user can cause. The CLI prints them without a traceback and exits non-zero."""

from contextvars import ContextVar


class TextsweepError(Exception):
    """A mistake in the user's input: the message names the input and the fix."""


class ConfigError(TextsweepError):
    """The sweep file is missing, unreadable or invalid."""


class DataError(TextsweepError):
    """The data source cannot be read or does not hold a binary text-classification set."""


class TrackingError(TextsweepError):
    """The MLflow tracking store cannot be reached or holds something unexpected."""


class RegistryError(TextsweepError):
    """Promotion is impossible (no finished trial, missing artifacts, ...)."""


class SweepError(TextsweepError):
    """The sweep stopped: too many trials in a row failed."""


# How a message names an option the user can pass: a keyword argument from Python (the default),
# a flag from the CLI, which sets this for the command it runs.
OPTION_STYLE: ContextVar[str] = ContextVar("textsweep_option_style", default="python")


def option(name: str, value: object = None) -> str:
    """An option as the user passes it: `restart=True` / `--restart`, `sweep_run_id='ab'` / `--sweep-run-id ab`;
    `value` None names the option alone (`sweep_run_id=` / `--sweep-run-id`)."""
    if OPTION_STYLE.get() == "cli":
        flag = "--" + name.replace("_", "-")
        return flag if value is None or value is True else f"{flag} {value}"
    return f"{name}=" if value is None else f"{name}={value!r}"
