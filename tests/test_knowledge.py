"""The knowledge files as a support lead edits them, and the checker that guards them."""

import shutil
from pathlib import Path

from bot.cli import main
from bot.faq.files import read_folder
from bot.faq.knowledge import Knowledge, load_knowledge, load_knowledge_files
from bot.handlers.commands import language_word
from bot.settings import PROJECT_ROOT
from bot.types import FAQ_LABELS, Label, Language


def test_shipped_knowledge_is_valid_and_complete(knowledge: Knowledge) -> None:
    assert set(knowledge.entries) == set(FAQ_LABELS)
    assert set(knowledge.examples) == set(Label) - FAQ_LABELS
    for entry in knowledge.entries.values():
        assert entry.answer[Language.ZH] and entry.answer[Language.EN]
        assert len(entry.questions[Language.ZH]) >= 5 and len(entry.questions[Language.EN]) >= 5


def test_answers_keep_the_guides_facts(knowledge: Knowledge) -> None:
    answers = {label: entry.answer for label, entry in knowledge.entries.items()}
    assert "1-3" in answers[Label.ONBOARDING_REVIEW][Language.ZH]
    assert "1-3" in answers[Label.WITHDRAW_HOW][Language.ZH]
    assert "1-3" in answers[Label.WITHDRAW_HOW][Language.EN]
    assert "官网" in answers[Label.FEES_RATES][Language.ZH]


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "knowledge"
    shutil.copytree(Path(__file__).parent.parent / "knowledge", target)
    return target


def test_check_names_file_and_line_of_a_phrasing_under_two_ids(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    faq = directory / "faq.yaml"
    text = faq.read_text(encoding="utf-8")
    knowledge = load_knowledge(directory)
    fees = next(p for p in knowledge.phrasings if p.label == Label.FEES_RATES)
    # Put the fees phrasing under the login intent too.
    intents = directory / "intents.yaml"
    lines = intents.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if "label: diagnose.login" in line)
    zh_index = next(i for i in range(index, len(lines)) if lines[i].strip() == "zh:")
    indent = lines[zh_index + 1][: len(lines[zh_index + 1]) - len(lines[zh_index + 1].lstrip())]
    lines.insert(zh_index + 1, f"{indent}- {fees.text}")
    intents.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = load_knowledge(directory).problems
    assert len(problems) == 1
    assert problems[0].file == "intents.yaml" and problems[0].line == zh_index + 2
    assert "fees.rates" in problems[0].message and f"faq.yaml:{fees.line}" in problems[0].message
    assert text == faq.read_text(encoding="utf-8")


def test_check_reports_missing_language_unknown_id_and_bad_related(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "faq.yaml").write_text(
        "entries:\n"
        "  - id: fees.rates\n"
        "    title: {zh: 手续费, en: Fees}\n"
        "    questions:\n"
        "      zh: [手续费多少]\n"
        "    answer: {zh: 看官网}\n"
        "    related: [fees.nothing]\n"
        "  - id: fees.free_lunch\n"
        "  - id: diagnose.free_lunch\n",
        encoding="utf-8",
    )
    messages = [str(p) for p in load_knowledge(directory).problems]
    assert "faq.yaml:5: fees.rates questions has no en list" in messages
    assert "faq.yaml:6: fees.rates answer has no en text" in messages
    # An id under an FAQ topic may be a new entry (the console's), then it needs its parts.
    assert "faq.yaml:7: fees.rates: related id fees.nothing is not another entry" in messages
    assert "faq.yaml:8: fees.free_lunch title must map zh and en to text" in messages
    assert "faq.yaml:9: unknown label id 'diagnose.free_lunch'" in messages
    assert "faq.yaml:0: no entry for FAQ id fees.promotions" in messages


def test_check_reports_broken_yaml_with_its_line(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "synonyms.yaml").write_text("synonyms:\n  提现: [体现\n", encoding="utf-8")
    problems = load_knowledge(directory).problems
    assert (
        problems and problems[0].file == "synonyms.yaml" and "not valid YAML" in problems[0].message
    )


def test_kb_check_command(tmp_path: Path, capsys: object) -> None:
    assert main(["kb", "check"]) == 0
    directory = _copy(tmp_path)
    (directory / "intents.yaml").write_text("intents: {}\n", encoding="utf-8")
    assert main(["--knowledge", str(directory), "kb", "check"]) == 1


def test_a_version_older_than_a_kind_takes_the_shipped_phrases_for_it() -> None:
    # A version published before the language names moved to dialogue.yaml still switches.
    files = read_folder(PROJECT_ROOT / "knowledge")
    dialogue = files["dialogue.yaml"]
    start, end = dialogue.index("  language_en:"), dialogue.index("  language_frame:")
    files["dialogue.yaml"] = dialogue[:start] + dialogue[end:]
    older = load_knowledge_files(files)
    assert older.problems == []
    assert language_word("english please", older.words) == Language.EN
    assert language_word("可以说中文吗", older.words) == Language.ZH
