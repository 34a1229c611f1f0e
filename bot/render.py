"""Every sentence the bot says comes from a jinja2 template under bot/templates/<language>/.

The same tree holds the short strings, as macros in one module per use: `ui.j2` for the bot's
buttons and names, `console.j2` for the agent console's words (docs/decisions/0004).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from jinja2.runtime import Macro

from bot.types import Button, Language, Reply

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


class Renderer:
    """Renders reply templates and the short UI strings (`ui.j2` macros) in either language."""

    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        self._env = Environment(
            loader=FileSystemLoader(directory),
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # Templates change with a deploy, not while serving: no stat() of the file before
            # every reply to see whether it changed (1% of a Telegram update's CPU).
            auto_reload=False,
        )
        self._ui = {
            language: self._env.get_template(f"{language}/ui.j2").module for language in Language
        }

    def render(self, language: Language, template: str, /, **values: Any) -> str:
        return self._env.get_template(f"{language}/{template}.j2").render(**values).strip()

    def reply(
        self,
        language: Language,
        template: str,
        /,
        *buttons: Button,
        image: bytes | None = None,
        **values: Any,
    ) -> Reply:
        """A reply rendered from `template`, which it names."""
        text = self.render(language, template, **values)
        return Reply(text, tuple(buttons), image, template=template)

    def ui(self, language: Language, key: str, **values: Any) -> str:
        macro = getattr(self._ui[language], key.replace(".", "_"))
        return str(macro(**values)).strip()

    def strings(self, language: Language, module: str) -> dict[str, str]:
        """Every macro of `<language>/<module>.j2` that takes no argument, rendered: a table of
        words for a page and its script (the console's `console.j2`)."""
        return {name: str(macro()) for name, macro in self.macros(language, module).items()}

    def macros(self, language: Language, module: str) -> dict[str, Macro]:
        """The macros `<language>/<module>.j2` defines, by name; each language must define the
        same ones with the same arguments (tests/test_replies.py checks it)."""
        names = self._env.get_template(f"{language}/{module}.j2").module
        return {name: value for name, value in vars(names).items() if isinstance(value, Macro)}
