"""The command line as an operator meets it: quiet by default, the details on request."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import build_gateway
from bot.cli import main
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory
from tests.support.serve import serve_environment, serving


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


async def test_serve_says_where_the_console_is(tmp_path: Path) -> None:
    env = serve_environment(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    async with serving(tmp_path, env) as server:
        said = server.output()
    assert f"http://127.0.0.1:{server.port}/agent" in said, said


async def test_demo_reset_gives_the_bind_codes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    monkeypatch.setenv("DATABASE_URL", database)
    settings = Settings()

    async def redeem() -> str | None:
        db = create_engine(database, settings)
        try:
            gateway = build_gateway(settings, session_factory(db), Renderer())
            return await gateway.redeem_bind_code("482913")
        finally:
            await db.dispose()

    assert await asyncio.to_thread(main, ["demo", "reset"]) == 0
    assert await redeem() == "M001"
    assert await redeem() is None  # single use
    assert await asyncio.to_thread(main, ["demo", "reset"]) == 0
    assert await redeem() == "M001"


def test_telegram_status_without_a_token_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    assert main(["telegram", "status"]) == 2
    assert "TELEGRAM_BOT_TOKEN" in capsys.readouterr().out
