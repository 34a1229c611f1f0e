"""Secrets never reach a log line: a filter that blanks them out of every record.

httpx logs request URLs at INFO, and a Telegram request URL contains the bot token; the filter
is the second line of defence after turning httpx's logger down.
"""

from __future__ import annotations

import logging


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if any(secret in message for secret in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "[redacted]")
            record.msg, record.args = message, None
        return True


def install_redaction(secrets: list[str]) -> None:
    """Redact `secrets` in every record that reaches the root logger's handlers."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    redactor = RedactSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
