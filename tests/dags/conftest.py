"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME, this repository's dags/, no examples.

Set before anything imports airflow (Airflow reads its configuration once, at import).
Only the DAG and e2e test folders do this; unit and integration tests never see Airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"

if "CLAIMSYNC_TEST_AIRFLOW_HOME" not in os.environ:  # the e2e conftest may have set it up already
    os.environ["CLAIMSYNC_TEST_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="claimsync-airflow-")
os.environ["AIRFLOW_HOME"] = os.environ["CLAIMSYNC_TEST_AIRFLOW_HOME"]
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(Path(os.environ["AIRFLOW_HOME"]) / "plugins"))
