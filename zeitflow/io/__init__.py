"""Storage: the fsspec artifact store (``artifacts``) and the SQLAlchemy metadata store (``metadata``).

Nothing here imports Prefect; import the submodules directly (they are not re-exported so that
importing ``zeitflow.io`` stays cheap).
"""
