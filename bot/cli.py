"""`btp-bot`: run the bot, manage its database and knowledge, and inspect the NLU."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import json
import logging
import sys
import uuid
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import select

from bot.app import Bot, build_matcher, open_bot
from bot.channels.terminal import run_terminal
from bot.faq.knowledge import KnowledgeError, load_knowledge, load_valid_knowledge
from bot.nlu.evaluate import evaluate, format_report, read_items
from bot.platform.server import run_platform_server
from bot.platform.world import load_world, read_world
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.models import Agent, AuditEntry


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if getattr(args, "knowledge", None):
        settings = settings.model_copy(update={"knowledge_dir": Path(args.knowledge)})
    return settings


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run() -> None:
        db = create_engine(settings.database_url, settings)
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(run())
    print("database is at the latest revision")
    return 0


def cmd_kb_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    knowledge = load_knowledge(settings.knowledge_dir)
    for problem in knowledge.problems:
        print(
            f"{settings.knowledge_dir / problem.file}:{problem.line}: {problem.message}",
            file=sys.stderr,
        )
    if knowledge.problems:
        print(f"{len(knowledge.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(
        f"ok: {len(knowledge.entries)} FAQ entries, {len(knowledge.examples)} intents, "
        f"{len(knowledge.phrasings)} phrasings, {len(knowledge.synonyms)} synonym groups"
    )
    return 0


def cmd_nlu_parse(args: argparse.Namespace) -> int:
    settings = _settings(args)
    matcher = build_matcher(settings, load_valid_knowledge(settings.knowledge_dir))
    print(json.dumps(matcher.parse(" ".join(args.text)).to_json(), ensure_ascii=False, indent=2))
    return 0


def cmd_nlu_eval(args: argparse.Namespace) -> int:
    settings = _settings(args)
    matcher = build_matcher(settings, load_valid_knowledge(settings.knowledge_dir))
    report = evaluate(matcher, read_items(Path(args.file)))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(format_report(report))
    return 0


def cmd_platform_load(args: argparse.Namespace) -> int:
    settings = _settings(args)
    world = read_world(Path(args.file))

    async def run() -> dict[str, int]:
        db = create_engine(settings.database_url, settings)
        try:
            await upgrade(db)
            return await load_world(
                session_factory(db), world, bind_code_secret=settings.bind_code_key
            )
        finally:
            await db.dispose()

    counts = asyncio.run(run())
    print("loaded " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    return 0


async def load_demo(bot: Bot, settings: Settings, *, quiet: bool = False) -> None:
    """Load the demo world and print the demo merchants' one-time bind codes."""
    if settings.demo_world is None:
        return
    world = read_world(settings.demo_world)
    await load_world(session_factory(bot.db), world, bind_code_secret=settings.bind_code_key)
    if quiet:
        return
    print("Demo world loaded. Bind a chat to a demo merchant with /bind CODE:")
    for merchant in world.merchants:
        if merchant.bind_code:
            status = merchant.status.value
            print(f"  {merchant.id} {merchant.name} ({status}): /bind {merchant.bind_code}")


def cmd_platform_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run() -> None:
        if args.demo:
            db = create_engine(settings.database_url, settings)
            try:
                await upgrade(db)
                if settings.demo_world is not None:
                    await load_world(
                        session_factory(db),
                        read_world(settings.demo_world),
                        bind_code_secret=settings.bind_code_key,
                    )
            finally:
                await db.dispose()
        await run_platform_server(settings, args.host, args.port)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def cmd_agent_add(args: argparse.Namespace) -> int:
    """Create or update a console agent; the password is read from stdin, never an argument."""
    settings = _settings(args)
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise ValueError("the password needs at least 8 characters")

    async def run() -> bool:
        db = create_engine(settings.database_url, settings)
        try:
            await upgrade(db)
            async with session_factory(db)() as session, session.begin():
                agent = await session.scalar(select(Agent).where(Agent.name == args.name))
                created = agent is None
                if agent is None:
                    agent = Agent(
                        name=args.name, password_hash="", capacity=settings.agent_capacity
                    )
                    session.add(agent)
                agent.password_hash = PasswordHasher().hash(password)
                agent.is_supervisor = args.supervisor
                session.add(
                    AuditEntry(
                        action="agent_added" if created else "agent_updated",
                        detail={"name": args.name, "supervisor": args.supervisor},
                    )
                )
                return created
        finally:
            await db.dispose()

    created = asyncio.run(run())
    role = "supervisor" if args.supervisor else "agent"
    print(f"{role} {args.name} {'added' if created else 'updated'}")
    return 0


async def _freeze_startup_objects(_app: object) -> None:
    """What start-up built (the knowledge, the matcher's index, templates, PTB's objects) lives
    as long as the process. Frozen, it is left out of the collector's full passes, which walked
    its ~140,000 objects in about 50 ms here, a pause every request in flight waited out."""
    gc.collect()
    gc.freeze()


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from webhook_server import create_app

    settings = _settings(args)
    if args.demo and settings.demo_world is not None:

        async def demo() -> None:
            async with open_bot(settings) as bot:
                await load_demo(bot, settings)

        asyncio.run(demo())
    print(f"Web chat:      http://{args.host}:{args.port}/")
    if settings.telegram_bot_token is None:
        print("Telegram:      off (set TELEGRAM_BOT_TOKEN to serve Telegram too)")
    elif args.telegram_polling:
        print("Telegram:      long polling")
    else:
        print("Telegram:      webhook at /telegram/webhook")
    app = create_app(settings, telegram_polling=args.telegram_polling)
    app.on_startup.append(_freeze_startup_objects)  # runs after create_app's own start-up
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=None,
        shutdown_timeout=15,
        access_log=None,
    )
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.json:
        logging.getLogger().setLevel(logging.WARNING)

    async def run() -> None:
        async with open_bot(settings) as bot:
            if args.demo:
                await load_demo(bot, settings, quiet=args.json)
            chat_id = args.chat_id or f"term-{uuid.uuid4().hex[:12]}"
            if args.as_merchant and not await bot.engine.bind(
                "terminal", chat_id, args.as_merchant
            ):
                raise ValueError(f"no merchant {args.as_merchant!r}")
            await run_terminal(bot.engine, json_mode=args.json, chat_id=chat_id)

    asyncio.run(run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="btp-bot", description=__doc__)
    parser.add_argument(
        "--knowledge", help="knowledge folder (default: KNOWLEDGE_DIR or ./knowledge)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply Alembic migrations up to the latest").set_defaults(
        func=cmd_db_upgrade
    )

    kb = commands.add_parser("kb", help="knowledge base").add_subparsers(
        dest="kb_command", required=True
    )
    kb.add_parser("check", help="validate the knowledge files").set_defaults(func=cmd_kb_check)

    nlu = commands.add_parser("nlu", help="language understanding").add_subparsers(
        dest="nlu_command", required=True
    )
    parse = nlu.add_parser("parse", help="print the Parse of TEXT as JSON")
    parse.add_argument("text", nargs="+")
    parse.set_defaults(func=cmd_nlu_parse)
    ev = nlu.add_parser("eval", help="evaluate on JSON lines {text, expected}")
    ev.add_argument("file")
    ev.add_argument("--json", action="store_true", help="one JSON object with every prediction")
    ev.set_defaults(func=cmd_nlu_eval)

    platform = commands.add_parser("platform", help="the embedded platform").add_subparsers(
        dest="platform_command", required=True
    )
    load = platform.add_parser("load", help="load merchants, orders and withdrawals from YAML/JSON")
    load.add_argument("file")
    load.set_defaults(func=cmd_platform_load)
    serve = platform.add_parser(
        "serve",
        help="serve the platform REST contract (docs/platform-api.md) over the embedded data",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8081)
    serve.add_argument("--demo", action="store_true", help="load the demo world first")
    serve.set_defaults(func=cmd_platform_serve)

    agent = commands.add_parser("agent", help="console agents").add_subparsers(
        dest="agent_command", required=True
    )
    add = agent.add_parser("add", help="add or update an agent; the password is read from stdin")
    add.add_argument("name")
    add.add_argument("--supervisor", action="store_true")
    add.set_defaults(func=cmd_agent_add)

    serve = commands.add_parser(
        "serve", help="run the HTTP server: web chat, Telegram, notifications"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--telegram-polling",
        action="store_true",
        help="fetch Telegram updates by long polling instead of a webhook",
    )
    serve.add_argument(
        "--demo", action="store_true", help="load the demo world and print its bind codes"
    )
    serve.set_defaults(func=cmd_serve)

    chat = commands.add_parser("chat", help="talk to the bot in this terminal")
    chat.add_argument("--json", action="store_true", help="JSON lines in and out, for scripts")
    chat.add_argument("--chat-id", help="continue the conversation with this id")
    chat.add_argument(
        "--as",
        dest="as_merchant",
        metavar="MERCHANT",
        help="bind this terminal chat to a merchant directly (support staff)",
    )
    chat.add_argument(
        "--demo", action="store_true", help="load the demo world and print its bind codes"
    )
    chat.set_defaults(func=cmd_chat)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KnowledgeError as exc:
        print(f"the knowledge files have problems:\n{exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
