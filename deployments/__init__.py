"""Deployment tooling (architecture §6): serve the deployments of ``prefect.yaml`` from one process
(``serve``), create the ``zeitflow-process`` work pool (``work_pool``) and start deployment runs over
Prefect's REST API (``trigger``)."""
