"""The dialogue layer's declarations: every flow's state table against its handlers and its
diagram, and the fixed words in the knowledge files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.diagnostics.registry import FLOWS
from bot.faq.knowledge import Knowledge

DIAGRAMS = Path(__file__).resolve().parent.parent / "bot" / "diagnostics"


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_each_flows_diagram_names_every_step_of_its_table(name: str) -> None:
    flow = FLOWS[name]
    diagram = (DIAGRAMS / f"{name}.mmd").read_text()
    for step, declared in flow.steps.items():
        assert f"step: {step}" in diagram, f"{name}.mmd lacks step {step}"
        for target in declared.goes_to:
            assert target in flow.steps, f"{name}: {step} goes to unknown step {target}"


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_each_step_asks_with_a_template_in_both_languages(name: str) -> None:
    templates = DIAGRAMS.parent / "templates"
    for step in FLOWS[name].steps.values():
        for language in ("zh", "en"):
            assert (templates / language / f"{step.prompt}.j2").exists(), step.prompt


def test_no_phrase_means_two_answers(knowledge: Knowledge) -> None:
    kinds = ("yes", "no", "cancel", "back_to_bot")
    seen: dict[str, str] = {}
    for kind in kinds:
        for phrase in knowledge.words.phrases[kind]:
            assert seen.setdefault(phrase, kind) == kind, phrase
