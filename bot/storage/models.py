"""The bot's own tables. Alembic owns the schema: change a model, then add a migration.

Over 400 lines on purpose: every table of the bot's own schema in one module, so Alembic and
the one `Base.metadata` see them together and a migration is checked against one file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from bot.types import (
    ConversationState,
    HandoffStatus,
    IncidentKind,
    IncidentStatus,
    OutboxStatus,
    OutcomeKind,
    OutcomeStatus,
)

_ID = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Moments stored as UTC and read back time-zone aware, on every database.

    SQLite keeps no offset: without this, 09:00+08:00 would be stored as 09:00 and read as UTC.
    A naive value is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StrEnumText(TypeDecorator[E]):
    """A state stored as its plain string (`String(16)`, no database enum, so the values in the
    tables are the ones they always were) and read back as the `StrEnum` member. Writing a
    string that is no member fails at once instead of storing a state no code knows."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON,
    }


def table_of(model: type[Base]) -> Table:
    """A mapped class's Core table, for the statements built once and run on every message
    (typed as a Table: `__table__` is declared as a mere FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class Identity(Base):
    """Who is behind a chat account: an anonymous customer, a bound merchant, or an agent."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("channel", "user_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="customer")
    merchant_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    """One chat on one channel; the open flow and its slots live here so a restart loses nothing."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel", "chat_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(128))
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"), default=None)
    state: Mapped[ConversationState] = mapped_column(
        StrEnumText(ConversationState), default=ConversationState.BOT
    )
    language: Mapped[str] = mapped_column(String(8), default="zh")
    language_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    flow: Mapped[str | None] = mapped_column(String(64), default=None)
    flow_step: Mapped[str | None] = mapped_column(String(64), default=None)
    slots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Flows a digression suspended, oldest first ({"flow", "step", "slots"}), and a request that
    # was refused for want of a binding ({"label", "text"}), taken up again after one.
    suspended: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_label: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Message(Base):
    """Every line of a chat, in and out; text is stored with personal numbers masked."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # The rate limit counts a chat's messages of the last minute on every message: without
        # it, that count read every message the chat ever sent.
        Index(
            "ix_messages_conversation_direction_at", "conversation_id", "direction", "created_at"
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[str] = mapped_column(String(8))
    sender_kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(String(128), default=None)
    label: Mapped[str | None] = mapped_column(String(64), default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    channel_message_id: Mapped[str | None] = mapped_column(String(128), default=None)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessedInbound(Base):
    """Inbound ids already handled: a redelivered message takes effect once."""

    __tablename__ = "processed_inbound"
    __table_args__ = (UniqueConstraint("channel", "message_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(128))
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class FaqFeedback(Base):
    __tablename__ = "faq_feedback"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    entry_id: Mapped[str] = mapped_column(String(64))
    helpful: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UnansweredQuestion(Base):
    """Texts that fell to out_of_scope, kept (masked) so the knowledge can grow."""

    __tablename__ = "unanswered_questions"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    best_label: Mapped[str | None] = mapped_column(String(64), default=None)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateEvent(Base):
    """Attempts counted against a limit (customer verification, bind codes, resets), per key."""

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# Attempts at an update whose failure may pass, after which it is given up (the channel's
# inbox retries with back-off; retention prunes a given-up row like a handled one).
INBOUND_MAX_ATTEMPTS = 8


class InboundUpdate(Base):
    """A channel update stored before it is acknowledged; processed later, in order per chat."""

    __tablename__ = "inbound_updates"
    __table_args__ = (
        UniqueConstraint("source", "update_id"),
        Index("ix_inbound_updates_pending", "processed_at", "id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    update_id: Mapped[int] = mapped_column(BigInteger)
    chat_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class OutboxItem(Base):
    """A message to deliver on a channel, written in the transaction that decided to send it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), default=None)
    message: Mapped[Message | None] = relationship()
    channel: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[OutboxStatus] = mapped_column(
        StrEnumText(OutboxStatus), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class WebChatSession(Base):
    """A web chat visitor; only a digest of the bearer token is kept. `last_seen_at` is the
    token's last use, refreshed every few minutes at most: unused for the idle timeout
    (`WEBCHAT_IDLE_TIMEOUT`), the token stops working."""

    __tablename__ = "webchat_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlatformEvent(Base):
    """Payment events from the platform already applied: a replay changes nothing.

    A failed payment also keeps what incident detection counts (migration 0040): the order's
    merchant and channel as the gateway answered, the failure code and the platform's attempt
    id the event named (`bot.incidents.store.notified_failures`)."""

    __tablename__ = "platform_events"
    # The detector reads the failures notified in its window, and nothing else, by time.
    __table_args__ = (
        Index(
            "ix_platform_events_failed_at",
            "received_at",
            postgresql_where=sql_text("status = 'failed'"),
            sqlite_where=sql_text("status = 'failed'"),
        ),
    )

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_no: Mapped[str] = mapped_column(String(18), index=True)
    status: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    merchant_id: Mapped[str | None] = mapped_column(String(32), default=None)
    channel: Mapped[str | None] = mapped_column(String(16), default=None)
    failure_code: Mapped[str | None] = mapped_column(String(32), default=None)
    attempt_id: Mapped[str | None] = mapped_column(String(64), default=None)


class OrderWatch(Base):
    """A chat asked about an order; it hears about that order's payment for 24 hours."""

    __tablename__ = "order_watches"
    __table_args__ = (Index("ix_order_watches_order_at", "order_no", "created_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    order_no: Mapped[str] = mapped_column(String(18))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutcomeCheck(Base):
    """What a turn did that is checked after the fact (verified resolution): written by the
    turn (`OutcomeExpected`), settled by the checker job (`bot/outcomes/checker.py`) once the
    platform shows the evidence or the deadline passes."""

    __tablename__ = "outcome_checks"
    # The checker reads the pending ones in id order (keyset), from an index of the pending
    # rows alone (migration 0040: settled history never slows its first batch); the report
    # reads by start.
    __table_args__ = (
        Index(
            "ix_outcome_checks_pending",
            "id",
            postgresql_where=sql_text("status = 'pending'"),
            sqlite_where=sql_text("status = 'pending'"),
        ),
        Index("ix_outcome_checks_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    kind: Mapped[OutcomeKind] = mapped_column(StrEnumText(OutcomeKind))
    # The flow (or FAQ entry) the turn was in, for the rates per flow and entry.
    topic: Mapped[str] = mapped_column(String(64))
    # What the platform is asked about: a link id, a login.
    subject: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column()
    due_at: Mapped[datetime] = mapped_column()
    status: Mapped[OutcomeStatus] = mapped_column(
        StrEnumText(OutcomeStatus), default=OutcomeStatus.PENDING
    )
    checked_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the evidence happened (the link paid, the login), for the reviewer.
    evidence_at: Mapped[datetime | None] = mapped_column(default=None)


class Agent(Base):
    """A support agent (or supervisor) of the console; the password is an argon2id hash."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    is_supervisor: Mapped[bool] = mapped_column(Boolean, default=False)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    # The most chats assigned to this agent at once; None follows AGENT_CAPACITY.
    capacity: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentSession(Base):
    """A logged-in console session; cookie and CSRF tokens are stored as digests only."""

    __tablename__ = "agent_sessions"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class AgentDevice(Base):
    """A browser an agent logged in from: its cookie token is stored as a digest only. Logins
    from it are throttled per device, so strangers failing on the name do not lock it out."""

    __tablename__ = "agent_devices"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class Handoff(Base):
    """One hand-over of a conversation to people: queued, assigned, resolved; or a ticket."""

    __tablename__ = "handoffs"
    __table_args__ = (
        Index("ix_handoffs_status_priority_created", "status", "priority", "created_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    status: Mapped[HandoffStatus] = mapped_column(
        StrEnumText(HandoffStatus), default=HandoffStatus.QUEUED
    )
    reason: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), default=None, index=True)
    findings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ticket_text: Mapped[str | None] = mapped_column(Text, default=None)
    last_told_position: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_at: Mapped[datetime | None] = mapped_column(default=None)
    first_reply_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    rating: Mapped[int | None] = mapped_column(Integer, default=None)


class AgentNote(Base):
    """An internal note on a conversation; the user never sees it."""

    __tablename__ = "agent_notes"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Every agent action: who did what to which conversation, when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), default=None)
    action: Mapped[str] = mapped_column(String(48))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id"), default=None
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Incident(Base):
    """A platform-wide payment problem (bot/incidents/): found by the detector or opened by a
    supervisor. While open the bot says so first; `series` and `merchants` are what the
    supervisor page draws (the last window's failures per minute, the merchants affected)."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_status", "status"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    kind: Mapped[IncidentKind] = mapped_column(StrEnumText(IncidentKind))
    key: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[IncidentStatus] = mapped_column(StrEnumText(IncidentStatus))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Since when the rate is back to normal (None while it is high): closes after a while.
    normal_since: Mapped[datetime | None] = mapped_column(default=None)
    opened_by: Mapped[str | None] = mapped_column(String(64), default=None)
    closed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    message_zh: Mapped[str | None] = mapped_column(Text, default=None)
    message_en: Mapped[str | None] = mapped_column(Text, default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    merchant_count: Mapped[int] = mapped_column(Integer, default=0)
    share: Mapped[float] = mapped_column(Float, default=0.0)
    baseline: Mapped[float] = mapped_column(Float, default=0.0)
    series: Mapped[list[Any]] = mapped_column(JSON, default=list)
    merchants: Mapped[list[Any]] = mapped_column(JSON, default=list)


class IncidentBaseline(Base):
    """A failure code's or a channel's usual share of failures (`code:<c>`, `channel:<m>`),
    a moving average over about a day that the detector keeps up when nothing is wrong."""

    __tablename__ = "incident_baselines"

    key: Mapped[str] = mapped_column(String(48), primary_key=True)
    share: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IncidentAsker(Base):
    """A chat that asked about a payment failure while an incident was open: told once when
    it closes (`notified_at`)."""

    __tablename__ = "incident_askers"
    __table_args__ = (UniqueConstraint("incident_id", "conversation_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    asked_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column(default=None)


class KnowledgeVersion(Base):
    """One full copy of the knowledge (`files`: each knowledge file's text, as in
    `knowledge/`), with who made it, from what and why. A version is never changed once
    written; a draft is a version not yet published (`bot/faq/store.py`)."""

    __tablename__ = "kb_versions"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    # files (the first start's import), import (`btp-bot kb import`), console (a draft)
    source: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    base_id: Mapped[int | None] = mapped_column(ForeignKey("kb_versions.id"), default=None)
    digest: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The draft's preview against its base (accuracy per NLU set, items whose label changed).
    preview: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class KnowledgePublication(Base):
    """A version made the one the bot answers from: the latest row is the published version.
    Rolling back is publishing an earlier version again, so this is also the history."""

    __tablename__ = "kb_publications"
    __table_args__ = (Index("ix_kb_publications_version_id", "version_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("kb_versions.id"))
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_by: Mapped[str] = mapped_column(String(64))
