"""What can go wrong in a request, with the HTTP status each one answers with."""

from __future__ import annotations

from claimsync.errors import ClaimsyncError


class WorkspaceError(ClaimsyncError):
    """A request the workspace refuses; the message is shown to the user as is."""

    http_status = 400


class InvalidInput(WorkspaceError):
    http_status = 400


class NotFound(WorkspaceError):
    http_status = 404


class Conflict(WorkspaceError):
    """The action does not fit the current state (already acknowledged, same person signing twice…)."""

    http_status = 409


class StateUnavailable(WorkspaceError):
    """The state database is not configured, unreachable, or not migrated."""

    http_status = 503
