"""Typed configuration, read once from the environment and an optional `.env` file."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from ipaddress import ip_network
from pathlib import Path

from argon2 import PasswordHasher
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.types import Language

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything a deployment may change; defaults run the embedded bot on SQLite."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'btp.db'}",
        description="SQLAlchemy async URL; postgresql+asyncpg://... for several processes.",
    )
    # How long a request waits on a busy or locked database before it fails, so a webhook
    # answers 503 (and Telegram delivers again) instead of hanging; see bot/storage/db.py.
    database_pool_timeout: float = Field(
        default=8.0, gt=0, description="Seconds a request waits for a pooled connection."
    )
    # PostgreSQL: connections per server process. The process runs Python on one core, so a
    # few connections keep it busy while PostgreSQL answers; more only add backends that
    # compete with the processes for the same cores (benchmarks/README.md, "What changed").
    database_pool_size: int = Field(
        default=3, ge=1, le=100, description="PostgreSQL: connections per server process."
    )
    database_busy_timeout: float = Field(
        default=5.0, gt=0, description="SQLite: seconds a write waits for another's lock."
    )
    database_lock_timeout: float = Field(
        default=5.0, gt=0, description="PostgreSQL: seconds a statement waits for a lock."
    )
    database_statement_timeout: float = Field(
        default=15.0, gt=0, description="PostgreSQL: seconds a statement may run at most."
    )
    knowledge_dir: Path = Field(default=PROJECT_ROOT / "knowledge")
    # The NLU sets (`nlu_*.jsonl`) a console draft is previewed on; unset or missing, the
    # preview has no sets to show (decision record 0022).
    kb_eval_dir: Path | None = Field(default=PROJECT_ROOT / "tests" / "data")
    default_language: Language = Language.ZH
    timezone: str = "Asia/Shanghai"
    # The matcher's calibrated cut-offs; see bot/nlu/matcher.py and benchmarks/README.md.
    nlu_min_score: float = Field(default=0.1, ge=0.0, le=1.0)
    nlu_min_margin: float = Field(default=0.005, ge=0.0, le=1.0)
    nlu_min_coverage: float = Field(default=0.45, ge=0.0, le=1.0)
    nlu_max_foreign: float = Field(default=0.2, ge=0.0, le=1.0)
    nlu_suggest_score: float = Field(default=0.15, ge=0.0, le=1.0)
    max_text_length: int = Field(default=4000, gt=0)
    rate_limit_per_minute: int = Field(default=20, gt=0)
    # Web chat: free resources a visitor gets without any account (bot/channels/webchat.py).
    # Sessions opened per client address in a sliding 10 minutes; behind a reverse proxy that
    # is not trusted to name the client, every visitor has the proxy's address (docs/SECURITY.md).
    webchat_sessions_per_address: int = Field(default=30, ge=1)
    webchat_sockets_per_session: int = Field(default=3, ge=1)
    # Per server process: the sockets live in the process that accepted them.
    webchat_sockets_per_address: int = Field(default=50, ge=1)
    # Seconds a session token may go unused before it stops working (the page then opens a new
    # session); longer than the few minutes between two refreshes of its last use.
    webchat_idle_timeout: float = Field(default=86400.0, gt=600)
    # Days the delivery bookkeeping (handled updates, sent replies, rate events) is kept.
    retention_days: int = Field(default=7, ge=1, le=3650)
    # Seconds between two passes of the outcome checker (verified resolution), and before the
    # first after start.
    outcome_check_seconds: float = Field(default=300.0, ge=1.0, le=86400.0)
    # Wrong bind codes, from all chats together, that pause binding for everyone (see
    # docs/SECURITY.md, "Merchant bind codes", for why so few: it bounds a botnet's guesses).
    bind_global_limit: int = Field(default=3, ge=1)
    bind_global_window_minutes: int = Field(default=60, ge=1, le=1440)
    # The key bind codes are stored under (HMAC-SHA256); unset, one is generated on first
    # start and kept in the database (platform_secrets).
    bind_code_secret: SecretStr | None = None
    # Channels
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_url: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    # Bot API calls per second this process makes at most (python-telegram-bot's limiter);
    # Telegram asks bots to stay near 30 a second across chats.
    telegram_max_rate: float = Field(default=30.0, gt=0)
    platform_webhook_secret: SecretStr | None = None
    # Human handoff
    business_hours: str = "09:00-21:00"
    business_days: str = "0123456"
    agent_capacity: int = Field(default=3, ge=0)  # 0: agents claim chats themselves
    console_secure_cookies: bool = False
    # argon2id cost of agent and platform account passwords (argon2-cffi's defaults, RFC 9106's
    # second recommendation). A stored hash of other costs is re-hashed at the agent's next
    # login; the tests turn the cost down (tests/conftest.py).
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=65536, ge=8)
    password_parallelism: int = Field(default=4, ge=1)
    # Reverse proxies whose X-Forwarded-For is believed, for limits per client address.
    trusted_proxies: str = ""
    # The platform: embedded (SqlPlatform on DATABASE_URL) unless PLATFORM_API_URL is set.
    platform_api_url: str | None = None
    platform_api_key: SecretStr | None = None
    platform_timeout: float = Field(default=3.0, gt=0)
    platform_public_url: str = "https://pay.btp.example"
    demo_world: Path | None = Field(default=PROJECT_ROOT / "bot" / "platform" / "demo_world.yaml")
    payment_link_min: Decimal = Decimal("0.01")
    payment_link_max: Decimal = Decimal("50000.00")
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "no-reply@btp.example"
    smtp_starttls: bool = True
    suggestions: int = Field(default=3, ge=0, le=5)
    # Incident detection (bot/incidents/): a failure code's or a channel's share of failures in
    # the last `incident_window_minutes` at least `incident_ratio` times its 24-hour baseline
    # (never taken below `incident_baseline_floor`), with at least `incident_min_failures`
    # failures from at least `incident_min_merchants` merchants, opens an incident; one back
    # to normal for `incident_quiet_minutes` closes it. The job runs every
    # `incident_interval_seconds` (0: not at all).
    incident_window_minutes: int = Field(default=10, ge=1, le=120)
    incident_ratio: float = Field(default=5.0, gt=1.0)
    incident_baseline_floor: float = Field(default=0.02, gt=0.0, le=1.0)
    incident_min_failures: int = Field(default=20, ge=1)
    incident_min_merchants: int = Field(default=5, ge=1)
    incident_quiet_minutes: int = Field(default=15, ge=1)
    incident_interval_seconds: float = Field(default=60.0, ge=0.0)

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ip_network(part.strip(), strict=False)  # ValueError names the bad entry
        return value

    @property
    def bind_code_key(self) -> str | None:
        """BIND_CODE_SECRET's value, or None: the platform then keeps a key of its own."""
        secret = self.bind_code_secret
        return secret.get_secret_value() if secret and secret.get_secret_value() else None

    @property
    def bind_limit(self) -> tuple[int, timedelta]:
        """Wrong bind codes across all chats per window (the bot's count and the platform's)."""
        return self.bind_global_limit, timedelta(minutes=self.bind_global_window_minutes)

    def password_hasher(self) -> PasswordHasher:
        """argon2id at the configured cost, for hashing and checking passwords."""
        return PasswordHasher(
            time_cost=self.password_time_cost,
            memory_cost=self.password_memory_kib,
            parallelism=self.password_parallelism,
        )
