"""Errors a user can cause. The CLI prints them without a traceback and exits non-zero."""


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
