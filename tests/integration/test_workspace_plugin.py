"""The Airflow plugin module: light to import (every Airflow process imports it) and well-formed.

Runs in a subprocess with its own AIRFLOW_HOME, the way the plugin manager loads it: the file
executed as a top-level module named after its stem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from claimsync.resources import project_dir

PLUGIN = project_dir() / "plugins" / "claimsync_airflow.py"

_PROBE = """
import importlib.util, json, sys
import airflow.plugins_manager
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("claimsync_airflow", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["claimsync_airflow"] = module
spec.loader.exec_module(module)
loaded = sorted(set(sys.modules) - before)
plugin = module.ClaimsyncPlugin
print(json.dumps({
    "loaded": loaded,
    "name": plugin.name,
    "external_views": plugin.external_views,
    "valid": airflow.plugins_manager.is_valid_plugin(plugin),
}))
"""


def _probe(tmp_path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(PLUGIN)], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_importing_the_plugin_loads_nothing_heavy(tmp_path: Path) -> None:
    probe = _probe(tmp_path)
    loaded = probe["loaded"]
    assert isinstance(loaded, list)
    heavy = [m for m in loaded if m.split(".")[0] in {"claimsync", "fastapi", "pandas", "sqlalchemy", "jinja2"}]
    assert heavy == [], heavy
    assert probe["valid"] is True
    assert probe["name"] == "claimsync"


def test_nav_entry_and_dag_run_tab_point_at_the_workspace(tmp_path: Path) -> None:
    views = {v["destination"]: v for v in _probe(tmp_path)["external_views"]}  # type: ignore[attr-defined]
    nav, dag_run = views["nav"], views["dag_run"]
    assert nav["name"] == "对账 Reconciliation"
    assert nav["href"] == "/recon/"  # with the slash: /recon is Airflow's own UI route
    assert nav["url_route"] == "recon"
    assert dag_run["href"] == "/recon/dagrun/{DAG_ID}/{RUN_ID}"
    assert dag_run["url_route"]  # the UI shows a DAG-run tab only for views with a url_route


_BUILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("claimsync_airflow", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["claimsync_airflow"] = module
spec.loader.exec_module(module)
(entry,) = module.ClaimsyncPlugin().fastapi_apps
paths = sorted(getattr(route, "path", "") for route in entry["app"].routes)
print(json.dumps({"prefix": entry["url_prefix"], "paths": paths}))
"""


def _build(tmp_path: Path, **env_extra: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CLAIMSYNC_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__SECRET_KEY": "a-test-secret-key-of-some-length",
            **env_extra,
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", _BUILD, str(PLUGIN)], env=env, capture_output=True, text=True, check=False, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_plugin_serves_the_workspace_at_recon(tmp_path: Path) -> None:
    built = _build(tmp_path)
    assert built["prefix"] == "/recon"
    assert {"/", "/run", "/exceptions", "/exception/{exception_id}", "/run/signoff"} <= set(built["paths"])  # type: ignore[arg-type]


def test_a_configuration_error_serves_a_reason_instead_of_stopping_the_api_server(tmp_path: Path) -> None:
    built = _build(tmp_path, CLAIMSYNC_OA_DOC_URL="ftp://oa.example.com/{request_id}")
    assert built["prefix"] == "/recon"
    assert built["paths"] == ["/{path:path}"]
