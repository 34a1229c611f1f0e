"""The bot's storage: SQLAlchemy models, async engine and sessions, Alembic migrations."""
