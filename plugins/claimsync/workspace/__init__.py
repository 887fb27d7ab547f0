"""Finance's reconciliation workspace: the report pages, actions and exports of the state schema.

A FastAPI app with no Airflow in it; the Airflow plugin (plugins/claimsync_airflow.py) mounts
it at ``/recon`` and plugs Airflow's login and permissions in through
:class:`~claimsync.workspace.security.WorkspaceAuth`.
"""

from claimsync.workspace.app import create_app
from claimsync.workspace.config import CachedUrl, WorkspaceConfig
from claimsync.workspace.security import Actor, WorkspaceAuth

__all__ = ["Actor", "CachedUrl", "WorkspaceAuth", "WorkspaceConfig", "create_app"]
