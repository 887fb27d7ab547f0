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


def one_line(error: BaseException) -> str:
    """A failure as one line for sync_run.error, logs and the console, personal data masked."""
    from claimsync.masking import mask_text

    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if not isinstance(error, ClaimsyncError):
        text = f"{type(error).__name__}: {text}"
    return mask_text(text) or ""
