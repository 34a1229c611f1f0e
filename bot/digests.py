"""How a random secret is kept at rest: its SHA-256 digest, never the secret itself.

One function for every token the bot or the embedded platform stores (web chat sessions, agent
sessions and their CSRF tokens, remembered devices, password reset tokens). A plain digest is
enough for secrets with that much entropy: no one can try them all. A short secret (a 6-digit
bind code) needs a keyed digest instead (`bot.platform.sql.bind_code_digest`).
"""

from __future__ import annotations

import hashlib
import hmac


def token_digest(token: str) -> str:
    """The hex SHA-256 digest a token is stored and looked up under."""
    return hashlib.sha256(token.encode()).hexdigest()


def matches_digest(given: str, digest: str) -> bool:
    """Whether `given` is the token stored as `digest`, in constant time."""
    return hmac.compare_digest(token_digest(given).encode(), digest.encode())
