"""The command line as an operator meets it: quiet by default, the details on request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _upgrade(database: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *flags, "db", "upgrade"],
        capture_output=True,
        text=True,
        env={"DATABASE_URL": f"sqlite+aiosqlite:///{database}", "PATH": ""},
        check=True,
        timeout=120,
    )


def test_migrations_run_quietly_unless_verbose(tmp_path: Path) -> None:
    quiet = _upgrade(tmp_path / "quiet.db")
    assert "alembic" not in quiet.stderr + quiet.stdout
    assert "latest revision" in quiet.stdout
    verbose = _upgrade(tmp_path / "verbose.db", "--verbose")
    assert "Running upgrade" in verbose.stderr
