"""End-to-end fixtures: Airflow in a throwaway AIRFLOW_HOME (SQLite metadata DB, migrated once per
session) and demo data in real PostgreSQL.

The Airflow environment is set before anything imports airflow; unit and integration tests
never see it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from claimsync.pgserver import PgServer
from tests.conftest import Databases, make_databases

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"

if "CLAIMSYNC_TEST_AIRFLOW_HOME" not in os.environ:  # the DAG tests' conftest may have set it up already
    os.environ["CLAIMSYNC_TEST_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="claimsync-airflow-")
os.environ["AIRFLOW_HOME"] = os.environ["CLAIMSYNC_TEST_AIRFLOW_HOME"]
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(Path(os.environ["AIRFLOW_HOME"]) / "plugins"))

DEMO_AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
DEMO_SCALE = 400
DEMO_SEED = 20260331


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """Airflow's own metadata DB (SQLite in AIRFLOW_HOME), migrated once per session."""
    home = Path(os.environ["AIRFLOW_HOME"])
    if not (home / ".claimsync-migrated").exists():
        airflow = Path(sys.executable).parent / "airflow"
        result = subprocess.run(
            [str(airflow), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (home / ".claimsync-migrated").touch()
    if str(DAGS_FOLDER) not in sys.path:
        sys.path.append(str(DAGS_FOLDER))  # as Airflow's bundle loader does for DAG files and tasks
    return home


@dataclass
class DemoSources:
    """OA and expense databases filled with demo data, and the answer key for DEMO_AS_OF."""

    databases: Databases
    key: object  # claimsync.demo.AnswerKey


@pytest.fixture(scope="session")
def demo_sources(pg_server: PgServer) -> Iterator[DemoSources]:
    from claimsync.config import Settings
    from claimsync.demo import generate
    from claimsync.refschema import create_reference_schema

    dbs, names = make_databases(pg_server)
    oa, expense = dbs.engine("oa"), dbs.engine("expense")
    try:
        create_reference_schema(oa, "oa", recreate=True)
        create_reference_schema(expense, "expense", recreate=True)
        key = generate(oa, expense, scale=DEMO_SCALE, seed=DEMO_SEED, as_of=DEMO_AS_OF, settings=Settings())
    finally:
        oa.dispose()
        expense.dispose()
    yield DemoSources(dbs, key)
    for name in names:
        pg_server.drop_database(name)


def airflow_conn_uri(sqlalchemy_url: str) -> str:
    """A SQLAlchemy URL as an AIRFLOW_CONN_* URI (Airflow wants the plain postgresql:// scheme)."""
    scheme, rest = sqlalchemy_url.split("://", 1)
    return f"{scheme.split('+')[0]}://{rest}"
