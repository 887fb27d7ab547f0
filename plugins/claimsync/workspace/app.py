"""The workspace web app: server-rendered pages, actions and exports over the state schema.

``create_app(config, auth)`` builds a FastAPI app meant to be mounted under a prefix (the
Airflow plugin mounts it at ``/recon``); links are built from the mount's ``root_path`` so
it works under any prefix. Every route depends on the host's auth (claimsync.workspace.
security); POSTs also need the CSRF token every page carries.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from claimsync.db import create_engine, safe_url
from claimsync.errors import ClaimsyncError
from claimsync.masking import mask_text
from claimsync.rules import ExceptionCode, Severity
from claimsync.workspace import actions, exports, queries, sources
from claimsync.workspace.charts import SEVERITY_COLOURS, TrendPoint, trend_svg
from claimsync.workspace.config import WorkspaceConfig
from claimsync.workspace.errors import InvalidInput, NotFound, StateUnavailable, WorkspaceError
from claimsync.workspace.filters import AGE_BUCKETS, STATUSES, UNRESOLVED, Cursor, ExceptionFilter
from claimsync.workspace.formatting import compact_money, count, day, money, percent, when
from claimsync.workspace.i18n import Translator, language
from claimsync.workspace.security import (
    CSRF_FIELD,
    Actor,
    WorkspaceAuth,
    check_csrf_token,
    make_csrf_token,
    require_editor,
    require_viewer,
)

_log = logging.getLogger(__name__)
TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
LANG_COOKIE: Final = "claimsync_lang"
DEPARTMENTS_SHOWN: Final = 12  # the run page lists the departments with the largest amounts; the rest in one row
_DONE: Final = frozenset({"acknowledge", "resolve", "write_off", "reopen", "assign", "signoff"})
_SIDE_FIELDS: Final = (
    "request_id",
    "claim_code",
    "request_mark",
    "employee_code",
    "department_code",
    "amount",
    "pay_amount",
    "currency",
    "state",
    "raw_state",
    "lines_total",
    "line_count",
    "changed_at",
)
_SIDE_COMPARED: Final = frozenset(
    {"request_id", "claim_code", "employee_code", "department_code", "amount", "currency", "state", "lines_total"}
)
_SIDE_MONEY: Final = frozenset({"amount", "pay_amount", "lines_total"})
_SAME_STATE: Final = {"withdrawn": "rejected"}

ViewerDep = Annotated[Actor, Depends(require_viewer)]
EditorDep = Annotated[Actor, Depends(require_editor)]


class Workspace:
    """Per-app state: the state-DB engine (re-created when the URL changes), the sources, templates."""

    def __init__(self, config: WorkspaceConfig) -> None:
        self.config = config
        self.tz = config.settings.tz
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._engine_url: str | None = None
        self._schema_ready = False
        self.oa = sources.SourceDatabase("oa", config.oa_url, config.source_timeout)
        self.expense = sources.SourceDatabase("expense", config.expense_url, config.source_timeout)
        self.department_names = sources.DepartmentNames(self.oa, config.settings.mapping)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def state_engine(self) -> Engine:
        """The state DB engine, checked once for reachability and the migrations the pages need."""
        url = self.config.state_url.get()
        if not url:
            reason = f" ({self.config.state_url.error})" if self.config.state_url.error else ""
            raise StateUnavailable(f"no state database configured{reason}: {self.config.state_hint}")
        with self._lock:
            if self._engine is None or self._engine_url != url:
                if self._engine is not None:
                    self._engine.dispose()
                try:
                    self._engine = create_engine(
                        url, "state", pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5}
                    )
                except ClaimsyncError as exc:
                    raise StateUnavailable(str(exc)) from None
                self._engine_url, self._schema_ready = url, False
            engine = self._engine
            if not self._schema_ready:
                try:
                    with engine.connect() as conn:
                        missing = queries.missing_migrations(conn)
                except DBAPIError as exc:
                    first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
                    raise StateUnavailable(
                        f"cannot reach the state database at {safe_url(engine.url)}: {first}"
                    ) from None
                if missing:
                    raise StateUnavailable(
                        f"the state schema at {safe_url(engine.url)} lacks migrations "
                        f"{', '.join(f'{v:03d}' for v in sorted(missing))}: run `claimsync db init`"
                    )
                self._schema_ready = True
            return engine

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
        self.oa.dispose()
        self.expense.dispose()


@dataclass
class Page:
    """What every template gets: language, links, the user and their CSRF token."""

    request: Request
    workspace: Workspace
    actor: Actor
    lang: str

    @property
    def t(self) -> Translator:
        return Translator(self.lang)

    @property
    def prefix(self) -> str:
        return str(self.request.scope.get("root_path", "")).rstrip("/")

    def url(self, path: str, params: dict[str, str] | None = None) -> str:
        query = urlencode({k: v for k, v in (params or {}).items() if v not in (None, "")})
        return f"{self.prefix}{path}" + (f"?{query}" if query else "")

    def run_url(self, run_id: str) -> str:
        return self.url("/run", {"run_id": run_id})

    def exceptions_url(self, flt: ExceptionFilter, **overrides: str | None) -> str:
        return self.url("/exceptions", flt.params(**overrides))

    def exception_url(self, exception_id: int, flt: ExceptionFilter | None = None) -> str:
        return self.url(f"/exception/{exception_id}", flt.params() if flt else None)

    @property
    def csrf_token(self) -> str:
        return make_csrf_token(self.workspace.config.csrf_secret, self.actor.name)

    def toggle_lang_url(self) -> str:
        other = "en" if self.lang == "zh" else "zh"
        params = [(k, v) for k, v in self.request.query_params.multi_items() if k not in ("lang", "done")]
        params.append(("lang", other))
        return f"{self.prefix}{self.request.url.path[len(self.prefix) :] or '/'}?{urlencode(params)}"

    def money(self, amount: Decimal | None, currency: str | None = "CNY") -> str:
        return money(amount, currency)

    def amounts(self, amounts: dict[str, Decimal]) -> str:
        """Per-currency totals, reporting currency first: ``¥1,200.00 + US$30.00``."""
        if not amounts:
            return money(Decimal(0), "CNY")
        ordered = sorted(amounts.items(), key=lambda kv: (kv[0] != "CNY", kv[0]))
        return " + ".join(money(amount, currency) for currency, amount in ordered)

    def when(self, value: datetime | None) -> str:
        return when(value, self.workspace.tz)

    def day(self, value: datetime | None) -> str:
        return day(value, self.workspace.tz)

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.workspace.templates.get_template(template).render(
            page=self,
            t=self.t,
            lang=self.lang,
            actor=self.actor,
            nonce=self.request.state.csp_nonce,
            count=count,
            percent=percent,
            colours=SEVERITY_COLOURS,
            mask=mask_text,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if self.request.query_params.get("lang") == self.lang:
            response.set_cookie(LANG_COOKIE, self.lang, path=f"{self.prefix}/", samesite="lax", httponly=True)
        return response


def _page(request: Request, actor: Actor) -> Page:
    lang = language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))
    return Page(request, request.app.state.workspace, actor, lang)


def _workspace(request: Request) -> Workspace:
    workspace: Workspace = request.app.state.workspace
    return workspace


def _now() -> datetime:
    return datetime.now().astimezone()


def _side_rows(oa: dict[str, Any] | None, expense: dict[str, Any] | None) -> list[tuple[str, Any, Any, bool]]:
    """The ledger's snapshot of both sides as (field, OA, expense, differs) rows."""
    rows: list[tuple[str, Any, Any, bool]] = []
    for name in _SIDE_FIELDS:
        if (oa is None or name not in oa) and (expense is None or name not in expense):
            continue
        left = None if oa is None else oa.get(name)
        right = None if expense is None else expense.get(name)
        differs = False
        if oa is not None and expense is not None and name in _SIDE_COMPARED and name in oa and name in expense:
            a, b = _SAME_STATE.get(str(left), left), _SAME_STATE.get(str(right), right)
            differs = str(a) != str(b)
        rows.append((name, left, right, differs))
    return rows


def _sides(detail: queries.ExceptionDetail) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The ledger's snapshot of both sides; without one, what the exception's own columns say."""
    if detail.oa_side is not None or detail.expense_side is not None:
        return detail.oa_side, detail.expense_side
    row = detail.row
    oa: dict[str, Any] | None = None
    expense: dict[str, Any] | None = None
    if row.oa_request_id is not None or row.oa_amount is not None or row.oa_state:
        oa = {"request_id": row.oa_request_id, "amount": row.oa_amount, "state": row.oa_state}
    if row.expense_amount is not None or row.expense_state:
        expense = {"claim_code": row.claim_code, "amount": row.expense_amount, "state": row.expense_state}
    return oa, expense


def _side_value(page: Page, name: str, value: Any, currency: str) -> str:
    if value is None or value == "":
        return "—"
    if name in _SIDE_MONEY:
        try:
            return money(Decimal(str(value)), currency)
        except ArithmeticError:
            return str(value)
    if name == "state":
        label = page.t.of("state", str(value))
        return f"{label} ({value})" if label != str(value) else label
    if name == "changed_at" and isinstance(value, str):
        try:
            return page.when(datetime.fromisoformat(value))
        except ValueError:
            return value
    return str(value)


def _live_value(page: Page, name: str, value: Any, currency: str) -> str:
    if value is None or value == "":
        return "—"
    if name in _SIDE_MONEY:
        return money(Decimal(value), currency)
    if isinstance(value, datetime):
        return page.when(value)
    return str(value)


def _doc_url(template: str | None, **values: Any) -> str | None:
    if template is None or any(v in (None, "") for v in values.values()):
        return None
    return template.format(**{k: quote(str(v), safe="") for k, v in values.items()})


def _back_filter(back: str | None) -> ExceptionFilter:
    """The list filter a detail page came from (carried in a form's hidden field), re-validated."""
    if not back or len(back) > 1000:
        return ExceptionFilter()
    try:
        return ExceptionFilter.parse(dict(parse_qsl(back)))
    except InvalidInput:
        return ExceptionFilter()


_RUN_ID_IN_PATH: Final = re.compile(r"^[^\x00-\x1f]{1,250}$")


def create_app(
    config: WorkspaceConfig,
    auth: WorkspaceAuth | None = None,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The workspace app. Without ``auth`` every route refuses (401): the host must wire its auth in."""

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            workspace.dispose()

    app = FastAPI(
        title="claimsync reconciliation workspace",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan,
    )
    workspace = Workspace(config)
    app.state.workspace = workspace
    if auth is not None:
        app.dependency_overrides[require_viewer] = auth.viewer
        app.dependency_overrides[require_editor] = auth.editor

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.csp_nonce = secrets.token_urlsafe(16)
        response = await call_next(request)
        if "content-security-policy" not in response.headers:
            response.headers["Content-Security-Policy"] = (
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:;"
                f" script-src 'nonce-{request.state.csp_nonce}'; form-action 'self'; frame-ancestors 'self';"
                " base-uri 'none'"
            )
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    def error_page(request: Request, status_code: int, message: str) -> Response:
        lang = language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))
        page = Page(request, workspace, Actor("", can_act=False), lang)
        if "text/html" not in request.headers.get("accept", "text/html") and request.method != "GET":
            return Response(message, status_code=status_code, media_type="text/plain; charset=utf-8")
        return page.render("error.html", status_code=status_code, message=message, status_code_=status_code)

    @app.exception_handler(WorkspaceError)
    async def workspace_error(request: Request, exc: WorkspaceError) -> Response:
        return error_page(request, exc.http_status, str(exc))

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> Response:
        # One line for the user; the traceback goes to the api-server's log.
        _log.exception("claimsync workspace: database error on %s", request.url.path)
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return error_page(request, 503, f"the state database could not answer: {first}")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}" for e in exc.errors()
        )
        return error_page(request, 400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401 and request.method == "GET" and auth is not None and auth.login_url is not None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(auth.login_url(target), status_code=303)
        return error_page(request, exc.status_code, str(exc.detail))

    # --- pages -------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, name="runs")
    def runs_page(request: Request, actor: ViewerDep, after: str | None = None) -> Response:
        page = _page(request, actor)
        if after is not None and not _RUN_ID_IN_PATH.match(after):
            raise InvalidInput("after is not a valid run id")
        with workspace.state_engine().connect() as conn:
            runs = queries.list_runs(conn, limit=30, after=after)
        return page.render("runs.html", runs=runs, severities=queries.SEVERITY_ORDER)

    @app.get("/run", response_class=HTMLResponse, name="run")
    def run_page(request: Request, actor: ViewerDep, run_id: str, done: str | None = None) -> Response:
        page = _page(request, actor)
        if not _RUN_ID_IN_PATH.match(run_id):
            raise InvalidInput("run_id is not valid")
        with workspace.state_engine().connect() as conn:
            detail = queries.run_detail(conn, run_id)
        names = workspace.department_names.get() if detail.by_department else {}
        t = page.t
        points = [
            TrendPoint(
                label=run.as_of.astimezone(workspace.tz).strftime("%m-%d"),
                tooltip=(
                    f"{page.day(run.as_of)} {run.run_id}: "
                    + ", ".join(
                        f"{t.of('severity', s)} {run.by_severity[s].count:,}"
                        for s in queries.SEVERITY_ORDER
                        if s in run.by_severity
                    )
                    + f" · {page.amounts(run.total.amounts)}"
                ),
                counts={s: f.count for s, f in run.by_severity.items()},
                amount=run.total.amounts.get("CNY", Decimal(0)),
                current=run.run_id == run_id,
            )
            for run in detail.trend
        ]
        chart = trend_svg(
            points,
            count_label=t("count"),
            amount_label=f"{t('amount')} (CNY)",
            format_amount=lambda a: compact_money(a, page.lang),
        )
        top_departments = detail.by_department[:DEPARTMENTS_SHOWN]
        other_departments = queries.Figure("", 0, {})
        for figure in detail.by_department[DEPARTMENTS_SHOWN:]:
            other_departments.add(figure.count, figure.amounts)
        return page.render(
            "run.html",
            detail=detail,
            top_departments=top_departments,
            other_departments=other_departments,
            other_department_count=max(len(detail.by_department) - DEPARTMENTS_SHOWN, 0),
            run=detail.run,
            chart=chart,
            department_names=names,
            flt=ExceptionFilter(run_id=run_id),
            done=done if done in _DONE else None,
            severities=queries.SEVERITY_ORDER,
        )

    @app.get("/run/report.html", name="run_report_html")
    def run_report_html(request: Request, actor: ViewerDep, run_id: str) -> Response:
        from claimsync.report import RunNotFound, load_report_data, render_report_html

        engine = workspace.state_engine()
        try:
            data = load_report_data(engine, run_id, timezone=workspace.config.settings.timezone)
        except RunNotFound as exc:
            raise NotFound(str(exc)) from None
        html = render_report_html(data)
        return HTMLResponse(
            html,
            headers={
                # The report is self-contained: inline styles and SVG, nothing fetched, no script run.
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
                " frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(f'report-{run_id}.html', safe='')}",
            },
        )

    @app.get("/run/report.xlsx", name="run_report_xlsx")
    def run_report_xlsx(request: Request, actor: ViewerDep, run_id: str) -> Response:
        import os
        import tempfile

        from claimsync.report import RunNotFound, load_report_data
        from claimsync.report.xlsx_out import write_report_xlsx

        engine = workspace.state_engine()
        try:
            data = load_report_data(engine, run_id, timezone=workspace.config.settings.timezone)
        except RunNotFound as exc:
            raise NotFound(str(exc)) from None
        handle, path = tempfile.mkstemp(suffix=".xlsx", prefix="claimsync-report-")
        os.close(handle)
        try:
            write_report_xlsx(data, Path(path))
            content = Path(path).read_bytes()
        finally:
            os.unlink(path)
        return _download(content, f"report-{run_id}.xlsx", _XLSX)

    @app.get("/exceptions", response_class=HTMLResponse, name="exceptions")
    def exceptions_page(request: Request, actor: ViewerDep, after: str | None = None) -> Response:
        page = _page(request, actor)
        flt = ExceptionFilter.parse(request.query_params)
        cursor = Cursor.decode(after, flt.sort) if after else None
        with workspace.state_engine().connect() as conn:
            run = queries.get_run(conn, flt.run_id) if flt.run_id else None
            reference = run.as_of if run else _now()
            result = queries.list_exceptions(conn, flt, reference, limit=workspace.config.page_size, after=cursor)
            department_codes = queries.departments(conn)
        return page.render(
            "exceptions.html",
            flt=flt,
            run=run,
            result=result,
            departments=department_codes,
            department_names=workspace.department_names.get() if department_codes else {},
            codes=[c.value for c in ExceptionCode],
            severities=[s.value for s in Severity],
            statuses=(*STATUSES, UNRESOLVED),
            ages=AGE_BUCKETS,
            age_days=lambda first_seen: max((reference - first_seen).days, 0),
            paged=cursor is not None,
        )

    @app.get("/exceptions.csv", name="exceptions_csv")
    def exceptions_csv(request: Request, actor: ViewerDep) -> Response:
        flt = ExceptionFilter.parse(request.query_params)
        engine = workspace.state_engine()
        timezone = workspace.config.settings.timezone
        with engine.connect() as conn:
            reference = queries.get_run(conn, flt.run_id).as_of if flt.run_id else _now()

        def body() -> Iterator[bytes]:
            with engine.connect() as conn:
                yield from exports.iter_csv(queries.iter_export_rows(conn, flt, reference, timezone))

        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": _attachment(_export_name(flt, "csv"))},
        )

    @app.get("/exceptions.xlsx", name="exceptions_xlsx")
    def exceptions_xlsx(request: Request, actor: ViewerDep) -> Response:
        flt = ExceptionFilter.parse(request.query_params)
        with workspace.state_engine().connect() as conn:
            reference = queries.get_run(conn, flt.run_id).as_of if flt.run_id else _now()
            content = exports.xlsx_bytes(
                queries.iter_export_rows(conn, flt, reference, workspace.config.settings.timezone),
                workspace.tz,
                flt,
                exported_by=actor.name,
                exported_at=_now(),
            )
        return _download(content, _export_name(flt, "xlsx"), _XLSX)

    @app.get("/exception/{exception_id}", response_class=HTMLResponse, name="exception")
    def exception_page(request: Request, actor: ViewerDep, exception_id: int, done: str | None = None) -> Response:
        page = _page(request, actor)
        flt = ExceptionFilter.parse(request.query_params)
        with workspace.state_engine().connect() as conn:
            detail = queries.exception_detail(conn, exception_id, flt.run_id)
            run_signoffs = queries.signoffs(conn, flt.run_id) if flt.run_id else {}
        row = detail.row
        oa = sources.oa_view(workspace.oa, workspace.config.settings.mapping, row.oa_request_id, row.claim_code)
        claim_code = row.claim_code or (oa.record or {}).get("bxdh")
        expense = sources.expense_view(
            workspace.expense, workspace.config.settings.mapping, claim_code, row.oa_request_id
        )
        live = sources.mark_differences(
            sources.live_comparison(oa.record, expense.record, workspace.tz),
            both_present=oa.record is not None and expense.record is not None,
        )
        request_id = row.oa_request_id if row.oa_request_id is not None else (oa.record or {}).get("requestid")
        return page.render(
            "exception.html",
            detail=detail,
            row=row,
            flt=flt,
            back_query=flt.query(),
            oa=oa,
            expense=expense,
            live=live,
            side_rows=_side_rows(*_sides(detail)),
            side_value=lambda name, value: _side_value(page, name, value, row.currency),
            live_value=lambda name, value: _live_value(page, name, value, row.currency),
            field_label=lambda name: page.t.of("field", name),
            oa_doc=_doc_url(workspace.config.oa_doc_url, request_id=request_id),
            expense_doc=_doc_url(workspace.config.expense_doc_url, claim_code=claim_code),
            status_actions=[a for a, (allowed, _) in actions.STATUS_ACTIONS.items() if row.status in allowed],
            note_max=actions.NOTE_MAX,
            age_days=max((_now() - row.first_seen).days, 0),
            done=done if done in _DONE else None,
            run_signoffs=run_signoffs,
        )

    @app.get("/dagrun/{dag_id}/{run_id:path}", name="dagrun")
    def dagrun_page(request: Request, actor: ViewerDep, dag_id: str, run_id: str) -> Response:
        page = _page(request, actor)
        if dag_id == workspace.config.reconcile_dag_id and _RUN_ID_IN_PATH.match(run_id):
            with workspace.state_engine().connect() as conn:
                found = queries.run_exists(conn, run_id)
            if found:
                return RedirectResponse(
                    page.url("/run", {"run_id": run_id, "lang": request.query_params.get("lang", "")}), 303
                )
        return page.render("message.html", message=page.t("no_report_for_run"), dag_id=dag_id, run_id=run_id)

    # --- actions -----------------------------------------------------------------------

    def _after_action(request: Request, path: str, params: dict[str, str]) -> RedirectResponse:
        prefix = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{prefix}{path}?{urlencode(params)}", status_code=303)

    @app.post("/exception/{exception_id}/status", name="exception_status")
    def exception_status(
        request: Request,
        *,
        actor: EditorDep,
        exception_id: int,
        action: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
        back: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    ) -> Response:
        check_csrf_token(workspace.config.csrf_secret, actor.name, csrf_token)
        actions.change_status(workspace.state_engine(), exception_id, action, actor.name, note)
        flt = _back_filter(back)
        return _after_action(request, f"/exception/{exception_id}", {**flt.params(), "done": action})

    @app.post("/exception/{exception_id}/owner", name="exception_owner")
    def exception_owner(
        request: Request,
        *,
        actor: EditorDep,
        exception_id: int,
        owner: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
        back: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    ) -> Response:
        check_csrf_token(workspace.config.csrf_secret, actor.name, csrf_token)
        actions.assign_owner(workspace.state_engine(), exception_id, owner, actor.name, note)
        flt = _back_filter(back)
        return _after_action(request, f"/exception/{exception_id}", {**flt.params(), "done": "assign"})

    @app.post("/run/signoff", name="run_signoff")
    def run_signoff(
        request: Request,
        *,
        actor: EditorDep,
        run_id: Annotated[str, Form()] = "",
        role: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    ) -> Response:
        check_csrf_token(workspace.config.csrf_secret, actor.name, csrf_token)
        if not _RUN_ID_IN_PATH.match(run_id):
            raise InvalidInput("run_id is not valid")
        actions.sign_off(workspace.state_engine(), run_id, role, actor.name, note)
        return _after_action(request, "/run", {"run_id": run_id, "done": "signoff"})

    return app


_XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _attachment(filename: str) -> str:
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _download(content: bytes, filename: str, media_type: str) -> Response:
    return Response(content, media_type=media_type, headers={"Content-Disposition": _attachment(filename)})


def _export_name(flt: ExceptionFilter, extension: str) -> str:
    parts = ["exceptions"]
    if flt.run_id:
        parts.append(flt.run_id)
    parts += [v for k, v in flt.params().items() if k not in ("run_id", "sort")]
    return "-".join(parts)[:150] + f".{extension}"
