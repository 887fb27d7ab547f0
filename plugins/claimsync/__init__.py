"""claimsync: keep an OA system and an expense-reimbursement system in step.

This package is the engine. It never imports Airflow (a test enforces it):
DAG files in dags/ call into it and pass it connection URLs.
"""

__version__ = "0.1.0"
