"""NLU speed and quality against a plain rapidfuzz nearest neighbour, measured in the same run.

For the real knowledge and for knowledge grown synthetically to 2,000 and 20,000 phrasings:
the time to load and index it, and `Matcher.parse` latency (p50, p99) over the dev set's
messages; beside it `rapidfuzz.process.extractOne` over the same phrasing strings, with the
ratio of the two. Also the accuracy of that plain nearest neighbour on the dev set, to show what
the matcher adds. Run: `.venv/bin/python benchmarks/nlu_latency.py`.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from functools import partial

from _common import ROOT, median, percentile, table
from rapidfuzz import fuzz, process

from bot.faq.knowledge import Knowledge, Phrasing, load_valid_knowledge
from bot.nlu.evaluate import evaluate, read_items
from bot.nlu.matcher import Matcher
from bot.types import Label

_FILLERS = [
    "请问",
    "你好",
    "亲",
    "麻烦问下",
    "我想知道",
    "急",
    "在吗",
    "hi",
    "please",
    "quick question",
]
_TAILS = ["呢", "啊", "吗", "谢谢", "？", "!!", "thanks", "asap", "😊", "在线等"]


def grown(knowledge: Knowledge, size: int, rng: random.Random) -> Knowledge:
    """The knowledge with synthetic phrasings (prefix, suffix, dropped character) up to `size`."""
    base = knowledge.phrasings
    extra: list[Phrasing] = []
    while len(base) + len(extra) < size:
        source = rng.choice(base)
        text = source.text
        if len(text) > 4 and rng.random() < 0.5:
            cut = rng.randrange(len(text))
            text = text[:cut] + text[cut + 1 :]
        text = f"{rng.choice(_FILLERS)} {text} {rng.choice(_TAILS)} {rng.randrange(10_000)}"
        extra.append(replace(source, text=text))
    return replace(knowledge, phrasings=[*base, *extra])


def timed(fn, texts: list[str], repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        for text in texts:
            start = time.perf_counter()
            fn(text)
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    rng = random.Random(7)
    start = time.perf_counter()
    knowledge = load_valid_knowledge(ROOT / "knowledge")
    load_files = time.perf_counter() - start
    items = read_items(ROOT / "tests" / "data" / "nlu_dev.jsonl")
    texts = [item.text for item in items]
    rows = []
    cold = 0.0
    for size in (len(knowledge.phrasings), 2_000, 20_000):
        world = knowledge if size == len(knowledge.phrasings) else grown(knowledge, size, rng)
        builds = []
        if size == len(knowledge.phrasings):
            start = time.perf_counter()
            Matcher(world)
            cold = time.perf_counter() - start
        for _ in range(3):
            start = time.perf_counter()
            matcher = Matcher(world)
            builds.append(time.perf_counter() - start)
        strings = [p.text for p in world.phrasings]
        repeat = 3 if size < 10_000 else 1
        ours = timed(matcher.parse, texts, repeat)
        plain = timed(
            partial(process.extractOne, choices=strings, scorer=fuzz.WRatio), texts, repeat
        )
        rows.append(
            [
                f"{len(world.phrasings):,}",
                f"{median(builds) * 1000:.0f} ms",
                f"{percentile(ours, 50):.2f} / {percentile(ours, 99):.2f} ms",
                f"{percentile(plain, 50):.2f} / {percentile(plain, 99):.2f} ms",
                f"{percentile(ours, 50) / percentile(plain, 50):.2f}x / "
                f"{percentile(ours, 99) / percentile(plain, 99):.2f}x",
            ]
        )
    print(
        f"knowledge files read and checked in {load_files * 1000:.0f} ms; first index build "
        f"(stemmer and pinyin tables cold) {cold * 1000:.0f} ms\n"
    )
    print(
        table(
            [
                "phrasings",
                "index build (median of 3)",
                "Matcher.parse p50 / p99",
                "extractOne p50 / p99",
                "ratio p50 / p99",
            ],
            rows,
        )
    )

    matcher = Matcher(knowledge)
    report = evaluate(matcher, items)
    labels = [p.label for p in knowledge.phrasings]
    strings = [p.text for p in knowledge.phrasings]
    correct = in_scope = 0
    for item in items:
        if item.expected == Label.OUT_OF_SCOPE:
            continue
        in_scope += 1
        _, _, index = process.extractOne(item.text, strings, scorer=fuzz.WRatio)
        correct += labels[index] == item.expected
    print(
        "\n"
        + table(
            ["on nlu_dev.jsonl", "in-scope accuracy", "out-of-scope false accept"],
            [
                [
                    "Matcher",
                    f"{report['in_scope_accuracy']:.1%}",
                    f"{report['out_of_scope_false_accept']:.1%}",
                ],
                [
                    "plain extractOne (WRatio), no cut-off",
                    f"{correct / in_scope:.1%}",
                    "100% (always answers)",
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
