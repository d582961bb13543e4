"""Code version recorded with every output: package version plus a digest of the package source,
so a code change never reuses outputs computed by older code."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from zeitflow import __version__


@cache
def code_version() -> str:
    """``<version>+<12 hex digits of the sha256 over zeitflow/**/*.py>`` (stable across machines)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"
