"""The knowledge loop's costs: building a version's matcher, previewing a console draft on the
project's NLU sets, and what a rebuild on a worker thread does to the event loop.

- build: the knowledge loaded from a version's files and its matcher built (what each process
  does once per publish, off the loop);
- labels: every item of every `tests/data/nlu_*.jsonl` set parsed by one matcher (a version's
  "before", computed once per process and kept);
- preview: what the draft page costs with the "before" kept: the draft's build plus one parse
  per item;
- loop stall: the longest gap between two 5 ms ticks of the event loop, idle and while a
  rebuild runs on a worker thread (turns wait at most about this long for it).

Run: `.venv/bin/python benchmarks/knowledge.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from _common import ROOT, median, table

from bot.app import build_matcher
from bot.faq.edits import add_phrasings
from bot.faq.files import read_folder
from bot.faq.knowledge import load_valid_knowledge_files
from bot.faq.preview import compare, labels, read_sets
from bot.nlu.matcher import Matcher
from bot.settings import Settings
from bot.types import Label, Language

T = TypeVar("T")


def _timed(work: Callable[[], T], runs: int) -> tuple[float, T]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        samples.append(time.perf_counter() - started)
    return median(samples), result


async def _stall(seconds: float, during: Callable[[], object] | None) -> float:
    """The longest gap between 5 ms ticks over `seconds`, with `during` on a worker thread."""
    loop = asyncio.get_running_loop()
    job: asyncio.Future[object] | None = (
        loop.run_in_executor(None, during) if during is not None else None
    )
    worst, last, end = 0.0, loop.time(), loop.time() + seconds
    while loop.time() < end or (job is not None and not job.done()):
        await asyncio.sleep(0.005)
        now = loop.time()
        worst, last = max(worst, now - last - 0.005), now
    if job is not None:
        await job
    return worst


def main() -> None:
    quick = "--quick" in sys.argv
    runs = 1 if quick else 5
    settings = Settings()
    files = read_folder(ROOT / "knowledge")
    draft = add_phrasings(files, Label.FEES_PROMOTIONS, {Language.ZH: ["蓝鲸套餐怎么开通"]}).files

    def build(texts: dict[str, str] = files) -> Matcher:
        return build_matcher(settings, load_valid_knowledge_files(texts))

    build_s, matcher = _timed(build, runs)
    sets = read_sets(ROOT / "tests" / "data")
    items = sum(len(s.items) for s in sets)
    labels_s, before = _timed(lambda: {s.name: labels(matcher, s) for s in sets}, runs)
    preview_s, _ = _timed(lambda: compare(sets, before, build(draft)), runs)
    idle = asyncio.run(_stall(1.0, None))
    busy = asyncio.run(_stall(0.0, build))
    print(
        table(
            ["step", "median", "what"],
            [
                ["build", f"{build_s * 1000:.0f} ms", "load a version's files, build its matcher"],
                ["labels", f"{labels_s * 1000:.0f} ms", f"{items} items of {len(sets)} sets"],
                ["preview", f"{preview_s * 1000:.0f} ms", "draft's build + one parse per item"],
                ["loop stall idle", f"{idle * 1000:.1f} ms", "longest gap between 5 ms ticks"],
                ["loop stall rebuilding", f"{busy * 1000:.1f} ms", "the same, build on a thread"],
            ],
        )
    )


if __name__ == "__main__":
    main()
