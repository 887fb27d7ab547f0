"""Who is asking, and may they act: the seam where the host (Airflow) plugs in its auth.

The engine never authenticates anyone itself. Every route depends on :func:`require_viewer`
(reading) or :func:`require_editor` (acting); both refuse until the host overrides them with
its own dependencies (claimsync_airflow.py wires Airflow's auth manager in), so a forgotten
wiring fails closed.

CSRF: an action is a cookie-authenticated form POST, which the browser would also send from
another site's page. Every form carries a token that is an HMAC over the user's name and
an issue time, keyed by a server secret; :func:`check_csrf_token` refuses a POST whose token
is missing, forged, issued to someone else, or older than ``CSRF_MAX_AGE``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from fastapi import HTTPException, status

CSRF_FIELD: Final = "csrf_token"
CSRF_MAX_AGE: Final = 12 * 3600  # seconds: a working day in one open tab


@dataclass(frozen=True)
class Actor:
    """The signed-in user: ``name`` is what the audit trail records; ``can_act`` shows the action forms."""

    name: str
    can_act: bool


@dataclass(frozen=True)
class WorkspaceAuth:
    """The host's auth, as FastAPI dependencies returning an :class:`Actor`.

    ``viewer`` must raise 401 without a user and 403 without read access; ``editor`` likewise
    without the permission to act (Airflow: ``requires_access_dag(method="PUT")``).
    ``login_url(next_path)`` is where a browser without a session is sent.
    """

    viewer: Callable[..., Any]
    editor: Callable[..., Any]
    login_url: Callable[[str], str] | None = None


def require_viewer() -> Actor:
    """Placeholder dependency: refused until the host overrides it (fail closed)."""
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication is not configured for this workspace")


def require_editor() -> Actor:
    """Placeholder dependency: refused until the host overrides it (fail closed)."""
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication is not configured for this workspace")


def _signature(secret: bytes, user: str, issued: int) -> str:
    message = f"claimsync-workspace-csrf\x00{user}\x00{issued}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def make_csrf_token(secret: bytes, user: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_signature(secret, user, issued)}"


def check_csrf_token(secret: bytes, user: str, token: str | None, now: float | None = None) -> None:
    """Raise 403 unless ``token`` was issued to ``user`` by this server within ``CSRF_MAX_AGE``."""
    if not token or len(token) > 200:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing CSRF token: reload the page and try again")
    issued_text, _, signature = token.partition(".")
    if not issued_text.isdigit():
        raise HTTPException(status.HTTP_403_FORBIDDEN, "malformed CSRF token: reload the page and try again")
    issued = int(issued_text)
    current = time.time() if now is None else now
    if not hmac.compare_digest(signature, _signature(secret, user, issued)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid CSRF token: reload the page and try again")
    if not -300 <= current - issued <= CSRF_MAX_AGE:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "expired CSRF token: reload the page and try again")
