"""claimsync's one Airflow plugin: finance's reconciliation workspace inside the Airflow UI.

- ``fastapi_apps``: the workspace (claimsync.workspace, an Airflow-free FastAPI app) served by
  the api-server at ``/recon/``, with Airflow's login and permissions wired in: reading needs
  GET access to the reconcile DAG, acting (acknowledge, resolve, write off, assign, sign off)
  needs PUT access — with SimpleAuthManager, roles user/op/admin act and viewer only reads.
- ``external_views``: "对账 Reconciliation" in the nav bar, and a tab on every DAG-run page
  (the reconcile DAG's runs open their report; other DAGs' runs say they have none).

Every Airflow process (scheduler, task runners…) imports this module, so its top level only
imports AirflowPlugin; the app, FastAPI and the engine are built the first time the
api-server asks for ``fastapi_apps``.

Configuration (environment of the api-server):
- state DB: Airflow connection ``claimsync_state`` (id from ``CLAIMSYNC_STATE_CONN_ID``), else
  ``CLAIMSYNC_STATE_URL``; the OA and expense DBs (live look-ups on the exception page,
  optional) likewise ``claimsync_oa`` / ``claimsync_expense`` or ``CLAIMSYNC_OA_URL`` /
  ``CLAIMSYNC_EXPENSE_URL``. Looked up in the request path, cached for a minute.
- source-document links: ``CLAIMSYNC_OA_DOC_URL`` (with ``{request_id}``),
  ``CLAIMSYNC_EXPENSE_DOC_URL`` (with ``{claim_code}``).
- the CSRF key is derived from ``[api] secret_key`` (the same on every api-server worker).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the auth dependencies'
# annotations at runtime, and they name types imported inside build_app().
import functools
import logging
import os
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/recon"
RECONCILE_DAG_ID = os.environ.get("CLAIMSYNC_RECONCILE_DAG_ID", "claimsync_reconcile")


def _connection_url(conn_id: str) -> Any:
    """A resolver: the Airflow connection's URI, or None when no such connection exists."""

    def resolve() -> str | None:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return str(Connection.get(conn_id).get_uri())
        except AirflowNotFoundException:
            return None

    return resolve


def _csrf_secret() -> bytes:
    import hashlib
    import hmac

    from airflow.configuration import conf

    key = conf.get("api", "secret_key", fallback="") or conf.get("api_auth", "jwt_secret", fallback="")
    if not key:
        raise RuntimeError("claimsync workspace: set [api] secret_key so every api-server worker shares it")
    return hmac.new(key.encode(), b"claimsync-workspace-csrf", hashlib.sha256).digest()


@functools.cache
def build_app() -> Any:
    """The workspace app with Airflow's auth manager behind every route (built once per process)."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager
    from typing import Annotated

    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from airflow.models.dag import DagModel
    from fastapi import Depends, FastAPI

    from claimsync.workspace import Actor, WorkspaceAuth, WorkspaceConfig, create_app

    can_read = requires_access_dag(method="GET", param_dag_id=RECONCILE_DAG_ID)
    can_act = requires_access_dag(method="PUT", param_dag_id=RECONCILE_DAG_ID)

    def viewer(user: GetUserDep, _: Annotated[None, Depends(can_read)]) -> Actor:
        details = DagDetails(id=RECONCILE_DAG_ID, team_name=DagModel.get_team_name(RECONCILE_DAG_ID))
        may_act = get_auth_manager().is_authorized_dag(method="PUT", details=details, user=user)
        return Actor(name=user.get_name(), can_act=bool(may_act))

    def editor(user: GetUserDep, _: Annotated[None, Depends(can_act)]) -> Actor:
        return Actor(name=user.get_name(), can_act=True)

    def login_url(next_path: str) -> str:
        return str(get_auth_manager().get_url_login(next_url=next_path))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Airflow's security helpers read the auth manager from the app they run in.
        app.state.auth_manager = get_auth_manager()
        yield

    env = os.environ
    config = WorkspaceConfig.from_env(
        _csrf_secret(),
        state_url=_connection_url(env.get("CLAIMSYNC_STATE_CONN_ID", "claimsync_state")),
        oa_url=_connection_url(env.get("CLAIMSYNC_OA_CONN_ID", "claimsync_oa")),
        expense_url=_connection_url(env.get("CLAIMSYNC_EXPENSE_CONN_ID", "claimsync_expense")),
        state_hint=(
            f"add the Airflow connection {env.get('CLAIMSYNC_STATE_CONN_ID', 'claimsync_state')!r}"
            " or set CLAIMSYNC_STATE_URL for the api-server"
        ),
    )
    return create_app(config, WorkspaceAuth(viewer=viewer, editor=editor, login_url=login_url), lifespan=lifespan)


def _unavailable_app(reason: str) -> Any:
    """What /recon/ serves when the workspace cannot be built: the reason, behind the same login."""
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(requires_access_dag(method="GET", param_dag_id=RECONCILE_DAG_ID))],
    )

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    def unavailable(path: str) -> PlainTextResponse:
        return PlainTextResponse(f"claimsync workspace is not available: {reason}", status_code=503)

    return app


@functools.cache
def workspace_app() -> Any:
    """The workspace, or — when its configuration is wrong — a page saying why.

    A plugin that raised here would stop the whole api-server, Airflow's UI included.
    """
    try:
        return build_app()
    except Exception as exc:
        logging.getLogger(__name__).exception("claimsync workspace could not start")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _unavailable_app(reason)


class ClaimsyncPlugin(AirflowPlugin):
    """The reconciliation workspace at /recon/, in the nav bar and on DAG-run pages."""

    name = "claimsync"
    external_views = [  # noqa: RUF012 (AirflowPlugin's own attribute type)
        {
            "name": "对账 Reconciliation",
            "href": f"{URL_PREFIX}/",  # the slash matters: /recon is the UI's own route
            "destination": "nav",
            "url_route": "recon",
            "nav_top_level": True,
        },
        {
            "name": "对账报告 Reconciliation report",
            "href": f"{URL_PREFIX}/dagrun/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "recon-run",
        },
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Built on first access: only the api-server (and `airflow plugins`) ever asks."""
        return [{"app": workspace_app(), "url_prefix": URL_PREFIX, "name": "claimsync reconciliation workspace"}]
