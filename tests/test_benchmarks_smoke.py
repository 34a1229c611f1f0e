"""The HTTP and memory benchmarks run end to end in their short forms and print their tables.

Both run at once as subprocesses (real `btp-bot serve` processes, load on 127.0.0.1 only), so
the pair stays well under 90 seconds; nothing here asserts a timing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
# About 70 s on a busy 2-core machine; the limit is only there so a stuck run cannot hang.
TIMEOUT = 240.0


def _table_rows(output: str, first_cell: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"| {first_cell}")]


def test_http_throughput_and_memory_quick_runs_print_their_tables(tmp_path: Path) -> None:
    commands = {
        "http": [
            sys.executable,
            str(BENCHMARKS / "http_throughput.py"),
            "--quick",
            "--only",
            "sqlite",
            "--seconds",
            "2",
        ],
        "memory": [sys.executable, str(BENCHMARKS / "memory.py"), "--quick"],
    }
    running = {
        name: subprocess.Popen(
            argv,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, argv in commands.items()
    }
    deadline = time.monotonic() + TIMEOUT
    outputs: dict[str, tuple[int, str, str]] = {}
    try:
        for name, process in running.items():
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs[name] = (process.returncode, out, err)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)

    code, out, err = outputs["http"]
    assert code == 0, f"http_throughput.py exited {code}:\n{out}\n{err[-3000:]}"
    assert "| database | processes | path |" in out
    closed = _table_rows(out, "SQLite (WAL) | 1 |")
    paths = " ".join(closed)
    for path in ("one-row baseline", "web chat", "Telegram webhook", "Telegram end to end"):
        assert path in paths, out
    assert "| path | requests | HTTP response p50 / p99 |" in out
    assert _table_rows(out, "Telegram webhook |"), out
    assert "x |" in paths  # the ratios against the baseline
    # Every chat's first message went out before the windows, and was answered.
    assert "| chats | first messages | vs later ones |" in out
    firsts = [row for row in closed if "| 200 |" in row and "/s |" in row]
    assert len(firsts) >= 3, out  # web chat, Telegram closed, Telegram end to end

    code, out, err = outputs["memory"]
    assert code == 0, f"memory.py exited {code}:\n{out}\n{err[-3000:]}"
    assert "| point | conversations | messages | RSS (VmRSS) |" in out
    assert _table_rows(out, "right after start"), out
    assert _table_rows(out, "after 1,000 conversations"), out
    assert _table_rows(out, "after 2,000 conversations"), out
    assert "from 1,000 to 2,000 conversations" in out
