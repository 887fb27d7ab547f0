"""Errors a user can cause end in one clear line; only bugs give tracebacks."""


class ClaimsyncError(Exception):
    """A run failed for a reason worth one line to the user (exit code 1)."""

    exit_code = 1


class ConfigError(ClaimsyncError):
    """Bad input or configuration: the message says what to fix (exit code 2)."""

    exit_code = 2


class RunStopped(ClaimsyncError):
    """A safety check stopped the run before any write (exit code 1)."""

    exit_code = 1
