"""What the workspace needs to know: where the databases are, the document links, the secret.

The URLs are *resolved*, not fixed: inside Airflow's api-server they come from Airflow
connections looked up in the request path (claimsync_airflow.py passes the resolvers), and
a connection edited in the UI takes effect within ``url_ttl`` seconds. Outside Airflow they
come from ``CLAIMSYNC_*_URL``.
"""

from __future__ import annotations

import os
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from claimsync.config import Settings
from claimsync.errors import ConfigError

UrlResolver = Callable[[], "str | None"]

RECONCILE_DAG_ID: Final = "claimsync_reconcile"
_TEMPLATE_FIELDS: Final = {"oa": {"request_id"}, "expense": {"claim_code"}}


class CachedUrl:
    """A resolver's answer kept for ``ttl`` seconds (a connection lookup per request is wasteful).

    A resolver that raises is treated as "not configured" for the same time, with the reason
    kept so the page can say why the source is unavailable.
    """

    def __init__(self, resolve: UrlResolver, ttl: float = 60.0) -> None:
        self._resolve = resolve
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: str | None = None
        self._error: str | None = None
        self._expires = 0.0

    def get(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now >= self._expires:
                try:
                    self._value, self._error = self._resolve(), None
                except Exception as exc:  # any lookup failure means "not available", said on the page
                    first_line = str(exc).splitlines()[0] if str(exc) else ""
                    self._value, self._error = None, f"{type(exc).__name__}: {first_line}"
                self._expires = now + self._ttl
            return self._value

    @property
    def error(self) -> str | None:
        return self._error

    def invalidate(self) -> None:
        with self._lock:
            self._expires = 0.0


def fixed_url(url: str | None) -> UrlResolver:
    return lambda: url


@dataclass(frozen=True)
class WorkspaceConfig:
    """Build with :meth:`from_env`; the Airflow plugin passes connection-backed resolvers."""

    state_url: CachedUrl
    oa_url: CachedUrl
    expense_url: CachedUrl
    csrf_secret: bytes
    settings: Settings = field(default_factory=Settings)
    oa_doc_url: str | None = None  # e.g. https://oa.example.com/workflow/request/ViewRequest.jsp?requestid={request_id}
    expense_doc_url: str | None = None  # e.g. https://expense.example.com/web/#/flow/{claim_code}
    reconcile_dag_id: str = RECONCILE_DAG_ID
    page_size: int = 50
    # Seconds a live source lookup may take before the page says the source is unavailable.
    source_timeout: int = 3
    # What to tell a user whose state database is not configured.
    state_hint: str = "set CLAIMSYNC_STATE_URL (a SQLAlchemy URL)"

    def __post_init__(self) -> None:
        if len(self.csrf_secret) < 16:
            raise ConfigError("the workspace's CSRF secret must be at least 16 bytes")
        for system, template in (("oa", self.oa_doc_url), ("expense", self.expense_doc_url)):
            if template is not None:
                check_doc_url_template(template, system)

    @classmethod
    def from_env(
        cls,
        csrf_secret: bytes,
        *,
        env: Mapping[str, str] | None = None,
        state_url: UrlResolver | None = None,
        oa_url: UrlResolver | None = None,
        expense_url: UrlResolver | None = None,
        url_ttl: float = 60.0,
        state_hint: str | None = None,
    ) -> WorkspaceConfig:
        """Settings from ``CLAIMSYNC_*``; a resolver given here wins over the env URL, which is its fallback."""
        env = os.environ if env is None else env
        settings = Settings.from_env(env)

        def resolver(given: UrlResolver | None, fallback: str | None) -> CachedUrl:
            if given is None:
                return CachedUrl(fixed_url(fallback), ttl=url_ttl)

            def resolve() -> str | None:
                return given() or fallback

            return CachedUrl(resolve, ttl=url_ttl)

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        return cls(
            state_url=resolver(state_url, settings.state_url),
            oa_url=resolver(oa_url, settings.oa_url),
            expense_url=resolver(expense_url, settings.expense_url),
            csrf_secret=csrf_secret,
            settings=settings,
            oa_doc_url=text("CLAIMSYNC_OA_DOC_URL"),
            expense_doc_url=text("CLAIMSYNC_EXPENSE_DOC_URL"),
            reconcile_dag_id=text("CLAIMSYNC_RECONCILE_DAG_ID") or RECONCILE_DAG_ID,
            state_hint=state_hint or cls.state_hint,
        )


def check_doc_url_template(template: str, system: str) -> str:
    """An http(s) URL whose only placeholders are the system's key (``{request_id}`` / ``{claim_code}``)."""
    name = f"CLAIMSYNC_{system.upper()}_DOC_URL"
    allowed = _TEMPLATE_FIELDS[system]
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL template: {template!r}") from None
    if not fields <= allowed or not fields:
        raise ConfigError(f"{name} must contain {' and '.join(sorted(allowed))} in braces (and nothing else)")
    if urlsplit(template).scheme not in ("http", "https"):
        raise ConfigError(f"{name} must be an http(s) URL, got {template!r}")
    return template
