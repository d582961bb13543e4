"""Prefect tasks: thin wrappers that read references, call ``zeitflow``, write atomically,
validate through a quality gate, register metadata and publish reports."""
