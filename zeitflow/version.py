"""Code version recorded with every output: package version plus a digest of the code and suites that
produce and check outputs, so a code change never reuses outputs (or cached gate verdicts) of older code."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from zeitflow import __version__


def source_digest(repo: Path) -> str:
    """12 hex digits of a sha256 over ``zeitflow/**/*.py``, ``tasks/**/*.py`` and ``expectations/*.json``
    under ``repo`` (paths and bytes, in sorted order): whatever decides an output's bytes or its gate verdict."""
    files = [*sorted((repo / "zeitflow").rglob("*.py")), *sorted((repo / "tasks").rglob("*.py")),
             *sorted((repo / "expectations").glob("*.json"))]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(repo).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@cache
def code_version() -> str:
    """``<version>+<source digest>`` of this installation; stable across machines, it keys every cached
    output."""
    return f"{__version__}+{source_digest(Path(__file__).resolve().parents[1])}"
