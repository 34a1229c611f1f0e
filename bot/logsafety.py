"""Secrets and personal numbers never reach a log line: filters on every record.

httpx logs request URLs at INFO, and a Telegram request URL contains the bot token; the filter
is the second line of defence after turning httpx's logger down. Log lines are no transcript:
what a message or an error carries of a card, ID or phone number or a typed password is masked
as in the transcript (`bot.privacy.mask_pii`), tracebacks included.
"""

from __future__ import annotations

import logging

from bot.privacy import mask_pii


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


class MaskPersonalData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_pii(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_pii(record.exc_text)
        return True


def install_redaction(secrets: list[str]) -> None:
    """Redact `secrets` and mask personal numbers in every record that reaches the root
    logger's handlers."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    redactor, masker = RedactSecrets(secrets), MaskPersonalData()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)  # first: masking could change a secret's digits
        if not any(isinstance(f, MaskPersonalData) for f in handler.filters):
            handler.addFilter(masker)
