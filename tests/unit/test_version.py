"""The code version keys every cached output: it must change with the code, the task layer and the gate
suites, and with nothing else."""

from __future__ import annotations

from pathlib import Path

from zeitflow.version import code_version, source_digest


def _tree(root: Path) -> Path:
    for relative, text in {"zeitflow/a.py": "A = 1\n", "zeitflow/sub/b.py": "B = 2\n", "tasks/t.py": "T = 3\n",
                           "expectations/raw_loaded.json": "{}\n", "README.md": "docs\n"}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def test_digest_changes_with_code_tasks_and_suites_only(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    base = source_digest(root)
    assert len(base) == 12 and source_digest(root) == base
    (root / "README.md").write_text("other docs\n")
    assert source_digest(root) == base
    for relative in ("zeitflow/sub/b.py", "tasks/t.py", "expectations/raw_loaded.json"):
        original = (root / relative).read_text()
        (root / relative).write_text(original + " ")
        assert source_digest(root) != base, relative
        (root / relative).write_text(original)
    assert source_digest(root) == base


def test_code_version_is_the_package_version_plus_the_digest_of_this_checkout() -> None:
    version, _, digest = code_version().partition("+")
    assert version and digest == source_digest(Path(__file__).resolve().parents[2])
