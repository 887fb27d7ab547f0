"""Shared fixtures: a real PostgreSQL server and fresh databases per test.

The server is $CLAIMSYNC_TEST_PG_URL when set (CI points it at the machine's server),
else an embedded PostgreSQL under .claimsync/test-pg that the session starts and stops.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from claimsync.db import create_engine
from claimsync.pgserver import PgServer, obtain_server
from claimsync.resources import project_dir

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = obtain_server(project_dir() / ".claimsync" / "test-pg", admin_url=os.environ.get("CLAIMSYNC_TEST_PG_URL"))
    yield server
    server.stop()


@dataclass
class Databases:
    """Three fresh databases (OA, expense, state) on the test server."""

    oa_url: str
    expense_url: str
    state_url: str

    def engine(self, system: str) -> sa.Engine:
        return create_engine(getattr(self, f"{system}_url"), system)


def make_databases(server: PgServer) -> tuple[Databases, list[str]]:
    stem = f"cs_t{os.getpid()}_{next(_counter)}"
    names = [f"{stem}_{system}" for system in ("oa", "expense", "state")]
    urls = [server.create_database(name, recreate=True) for name in names]
    return Databases(*urls), names


@pytest.fixture
def databases(pg_server: PgServer) -> Iterator[Databases]:
    dbs, names = make_databases(pg_server)
    yield dbs
    for name in names:
        pg_server.drop_database(name)
