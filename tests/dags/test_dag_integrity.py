"""Every DAG file parses cleanly, follows the project's DAG policy, and touches nothing while parsing.

Parsing happens in a fresh interpreter, as the DAG processor does it, with every way to reach a
database, a connection or a Variable replaced by a counter that raises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.dags.conftest import DAGS_FOLDER

PARSE_SCRIPT = r"""
import json, sys

calls = []

def forbid(name):
    def refuse(*args, **kwargs):
        calls.append(name)
        raise RuntimeError(f"{name} called while parsing DAG files")
    return refuse

import psycopg2
psycopg2.connect = forbid("psycopg2.connect")
try:
    import psycopg
    psycopg.connect = forbid("psycopg.connect")
except ImportError:
    pass

already = set(sys.modules)

from airflow.sdk import BaseHook, Connection, Variable
Connection.get = classmethod(forbid("Connection.get"))
BaseHook.get_connection = classmethod(forbid("BaseHook.get_connection"))
Variable.get = staticmethod(forbid("Variable.get"))

from airflow.dag_processing.dagbag import DagBag

# The DAG processor and the task runner put the bundle folder on sys.path (BundleDagBag), which is
# how a DAG file imports its helper module; do the same here.
sys.path.append(sys.argv[1])
before = set(sys.modules)
bag = DagBag(dag_folder=sys.argv[1])
loaded = sorted(set(sys.modules) - before)

dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "fileloc": dag.fileloc,
        "doc_md": dag.doc_md or "",
        "tags": sorted(dag.tags or []),
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "retries": {t.task_id: t.retries for t in dag.tasks},
        "params": sorted(dag.params.keys()),
        "callbacks": {t.task_id: bool(t.on_failure_callback) for t in dag.tasks},
    }
print(json.dumps({"import_errors": bag.import_errors, "dags": dags, "calls": calls, "loaded": loaded}))
"""

HEAVY_MODULES = ("pandas", "pyarrow", "great_expectations", "xlsxwriter", "openpyxl", "claimsync")


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(DAGS_FOLDER)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports_without_errors(parsed: dict[str, Any]) -> None:
    assert parsed["import_errors"] == {}
    assert len(parsed["dags"]) >= 1
    dag_files = {Path(d["fileloc"]).name for d in parsed["dags"].values()}
    ignored = (DAGS_FOLDER / ".airflowignore").read_text().split() if (DAGS_FOLDER / ".airflowignore").exists() else []
    candidates = {p.name for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_")}
    assert candidates <= dag_files, f"DAG files that define no DAG: {candidates - dag_files}"
    assert "_claimsync_*.py" in ignored  # helper modules are not parsed as DAG files


def test_parsing_touches_no_database_connection_or_variable(parsed: dict[str, Any]) -> None:
    assert parsed["calls"] == []


def test_parsing_imports_nothing_heavy(parsed: dict[str, Any]) -> None:
    heavy = [m for m in parsed["loaded"] if m.split(".")[0] in HEAVY_MODULES]
    assert heavy == []


def test_every_dag_follows_the_dag_policy(parsed: dict[str, Any]) -> None:
    for dag_id, dag in parsed["dags"].items():
        assert dag_id.startswith("claimsync_"), dag_id
        assert len(dag["doc_md"].strip()) > 200, f"{dag_id} needs a real doc_md"
        assert "claimsync" in dag["tags"], dag_id
        assert dag["max_active_runs"] == 1, dag_id
        assert dag["catchup"] is False, dag_id
        assert dag["retries"], f"{dag_id} has no tasks"
        assert min(dag["retries"].values()) >= 2, f"{dag_id}: {dag['retries']}"
        assert all(dag["callbacks"].values()), f"{dag_id} tasks without a failure callback: {dag['callbacks']}"


def test_the_reconcile_dag_has_its_params_and_task_groups(parsed: dict[str, Any]) -> None:
    dag = parsed["dags"]["claimsync_reconcile"]
    assert dag["params"] == ["as_of", "buckets", "force", "full"]
    assert sorted(dag["retries"]) == [
        "prepare.open_run",
        "publish.close_run",
        "publish.record_ledger",
        "publish.render_report",
        "reconcile.list_buckets",
        "reconcile.reconcile_bucket",
        "validate.validate_sources",
    ]
    for word in ("as_of", "full", "buckets", "Rerunning", "claimsync_oa", "claimsync_state"):
        assert word in dag["doc_md"]


def test_the_parse_check_would_catch_a_connection_lookup(tmp_path: Path) -> None:
    """The guard itself works: a DAG file that looks up a connection at parse time is reported."""
    (tmp_path / "bad_dag.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import Connection, dag, task\n"
        "URL = Connection.get('claimsync_oa').get_uri()\n"
        "@dag(schedule=None, start_date=datetime(2026, 1, 1))\n"
        "def bad():\n"
        "    @task\n"
        "    def t(): return 1\n"
        "    t()\n"
        "bad()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(tmp_path)], capture_output=True, text=True, check=False, timeout=300
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["calls"] == ["Connection.get"]
    assert "bad_dag.py" in " ".join(report["import_errors"])
