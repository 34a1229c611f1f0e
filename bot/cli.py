"""`btp-bot`: run the bot, manage its database and knowledge, and inspect the NLU.

Over 400 lines on purpose: one small `cmd_*` function per subcommand and the one parser that
names them all (`build_parser`), so `btp-bot --help` and this file read the same. Each command
is a thin wrapper over the module that does the work.
"""

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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Bot, build_matcher, open_bot
from bot.channels.terminal import run_terminal
from bot.escalation import login_guard
from bot.faq.knowledge import KnowledgeError, load_knowledge, load_valid_knowledge
from bot.faq.transfer import export_published, import_folder
from bot.nlu.evaluate import evaluate, format_report, read_items
from bot.outcomes.report import OutcomeReport, outcome_report, parse_period
from bot.outcomes.report import format_report as format_outcomes
from bot.platform.server import run_platform_server
from bot.platform.world import World, load_world, read_world
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.events import EventBus
from bot.storage.models import Agent, AgentDevice, AgentSession, AuditEntry

T = TypeVar("T")


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
    folder = Path(args.dir) if args.dir else settings.knowledge_dir
    knowledge = load_knowledge(folder)
    for problem in knowledge.problems:
        print(f"{folder / problem.file}:{problem.line}: {problem.message}", file=sys.stderr)
    if knowledge.problems:
        print(f"{len(knowledge.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(
        f"ok: {len(knowledge.entries)} FAQ entries, {len(knowledge.examples)} intents, "
        f"{len(knowledge.phrasings)} phrasings, {len(knowledge.synonyms)} synonym groups"
    )
    return 0


def _on_database(
    settings: Settings, work: Callable[[async_sessionmaker[AsyncSession], EventBus], Awaitable[T]]
) -> T:
    """Run `work(sessions, bus)` on the upgraded database, without building the bot."""

    async def run() -> T:
        db = create_engine(settings.database_url, settings)
        bus = EventBus(settings.database_url)
        try:
            await upgrade(db)
            await bus.start()
            return await work(session_factory(db), bus)
        finally:
            await bus.close()
            await db.dispose()

    return asyncio.run(run())


def cmd_kb_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    target = Path(args.dir)

    async def work(sessions: async_sessionmaker[AsyncSession], _bus: EventBus) -> int:
        version_id, written = await export_published(sessions, settings.knowledge_dir, target)
        print(f"version {version_id}: {len(written)} files written to {target}")
        return 0

    return _on_database(settings, work)


def cmd_kb_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    folder = Path(args.dir)

    async def work(sessions: async_sessionmaker[AsyncSession], bus: EventBus) -> int:
        imported = await import_folder(
            sessions, bus, folder, by=args.by, knowledge_dir=settings.knowledge_dir
        )
        if imported.new:
            print(f"version {imported.version_id} published from {folder}")
        else:
            print(f"{folder} is the published version {imported.version_id} already")
        return 0

    return _on_database(settings, work)


def cmd_nlu_parse(args: argparse.Namespace) -> int:
    settings = _settings(args)
    matcher = build_matcher(settings, load_valid_knowledge(settings.knowledge_dir))
    print(json.dumps(matcher.parse(" ".join(args.text)).to_json(), ensure_ascii=False, indent=2))
    return 0


_NLU_EVAL_DESCRIPTION = """\
Measure the matcher on a labelled set: accuracy, in-scope top-1, out-of-scope false accept and
false reject, overall, per language (zh / en / mixed: Chinese and English words in one message),
per length (short: at most 40 characters; long) and for near vs far out-of-scope items
(an item may carry "oos": "near" for questions close to the domain such as loans or other
platforms' fees, "far" for weather, recipes and the like), then per label and the confusions.

The sets in tests/data and how each was made:
  nlu_dev.jsonl      408 messages written by the project's own sessions alongside the
                     knowledge. Tuning set: thresholds and knowledge are tuned on it.
  nlu_tune.jsonl     490 messages (110 out of scope, marked near/far) written by a separate
                     writer from knowledge/LABELS.md alone, never from knowledge/ or the other
                     sets (617 written; the 127 the test set's writer also wrote were taken
                     out). Tuning set for issue 17 (English, long messages, slang).
  nlu_tune2.jsonl    336 messages (74 out of scope, 38 near and 36 far) written by a helper
                     session that saw only knowledge/LABELS.md and issue 17, never knowledge/
                     or the other sets (360 written; the 24 also in nlu_test.jsonl or
                     nlu_holdout.jsonl were taken out). Second tuning set for issue 17.
  nlu_tune3.jsonl    328 messages (69 out of scope; 217 English, 158 over 40 characters)
                     written by a helper session that saw only knowledge/LABELS.md and
                     issue 17 (420 written; the 92 also in another set were taken out).
                     Third tuning set for issue 17.
  nlu_tune4.jsonl    260 messages (106 out of scope, 44 near and 62 far, most far ones in a
                     shop owner's frame; 137 English, 59 over 40 characters) written by a
                     helper session that saw only knowledge/LABELS.md and issue 17 (360
                     written; the 100 also in another set were taken out). Fourth tuning set
                     for issue 17, on the boundary of what the bot answers.
  nlu_tune5.jsonl    254 messages (120 out of scope, 88 near and 32 far, most sharing words
                     with in-scope questions; 126 English, 90 long) written by a helper
                     session that saw only knowledge/LABELS.md and issue 17 (300 written; the
                     46 also in another set were taken out). Fifth tuning set: the boundary.
  nlu_tune6.jsonl    322 messages (56 out of scope; 209 English, 153 long: paraphrases that
                     avoid the label table's words, shop stories) written by another such
                     session (360 written; 38 taken out). Sixth tuning set: English, long.
  nlu_holdout.jsonl  350 messages written independently of the knowledge; figures are
                     reported before and after a change, its items are never tuned on.
  nlu_test.jsonl     THE TEST SET, where present (issue 17: at least 600 items, 40% English,
                     15% long, 20% out of scope, half of them near), written by people who
                     never saw knowledge/ or the other sets, from the label table alone. Only
                     evaluated, never tuned on; a failure is fixed by fixing its class, not
                     its sentence.
"""


def cmd_nlu_eval(args: argparse.Namespace) -> int:
    settings = _settings(args)
    matcher = build_matcher(settings, load_valid_knowledge(settings.knowledge_dir))
    report = evaluate(matcher, read_items(Path(args.file)))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(format_report(report))
    return 0


def cmd_report_outcomes(args: argparse.Namespace) -> int:
    """Verified resolution beside containment, per flow and FAQ entry (the supervisor's
    figures, from the same function)."""
    settings = _settings(args)
    since = parse_period(args.since)

    async def run() -> OutcomeReport:
        db = create_engine(settings.database_url, settings)
        try:
            await upgrade(db)
            return await outcome_report(session_factory(db), since)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    if args.json:
        print(json.dumps({"since": args.since, **report.as_json()}, ensure_ascii=False))
    else:
        print(format_outcomes(report))
    return 0


def cmd_platform_load(args: argparse.Namespace) -> int:
    settings = _settings(args)
    world = read_world(Path(args.file))

    async def run() -> dict[str, int]:
        db = create_engine(settings.database_url, settings)
        try:
            await upgrade(db)
            return await load_world(
                session_factory(db),
                world,
                settings.password_hasher(),
                bind_code_secret=settings.bind_code_key,
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
    await load_world(
        session_factory(bot.db),
        world,
        settings.password_hasher(),
        bind_code_secret=settings.bind_code_key,
    )
    if not quiet:
        _print_bind_codes(world)


def _print_bind_codes(world: World) -> None:
    print("Demo world loaded. Bind a chat to a demo merchant with /bind CODE:")
    for merchant in world.merchants:
        if merchant.bind_code:
            status = merchant.status.value
            print(f"  {merchant.id} {merchant.name} ({status}): /bind {merchant.bind_code}")
    print("Each code works once; `btp-bot demo reset` (or restarting with --demo) restores them.")


def cmd_demo_reset(args: argparse.Namespace) -> int:
    """Put the demo world back as it was: orders, logins, withdrawals and unused bind codes."""
    settings = _settings(args)
    if settings.demo_world is None:
        print("error: DEMO_WORLD is not set", file=sys.stderr)
        return 2
    world = read_world(settings.demo_world)

    async def run() -> None:
        db = create_engine(settings.database_url, settings)
        try:
            await upgrade(db)
            await load_world(
                session_factory(db),
                world,
                settings.password_hasher(),
                bind_code_secret=settings.bind_code_key,
            )
        finally:
            await db.dispose()

    asyncio.run(run())
    _print_bind_codes(world)
    return 0


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
                        settings.password_hasher(),
                        bind_code_secret=settings.bind_code_key,
                    )
            finally:
                await db.dispose()
        await run_platform_server(settings, args.host, args.port)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def _read_password(name: str) -> str:
    """A new password from stdin (a prompt on a terminal), never from the command line."""
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise ValueError("the password needs at least 8 characters")
    return password


def _on_agents(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the (upgraded) database."""

    async def run() -> T:
        db = create_engine(settings.database_url, settings)
        try:
            await upgrade(db)
            async with session_factory(db)() as session, session.begin():
                return await work(session)
        finally:
            await db.dispose()

    return asyncio.run(run())


async def _agent_named(session: AsyncSession, name: str) -> Agent:
    agent = await session.scalar(select(Agent).where(Agent.name == name))
    if agent is None:
        raise ValueError(f"no agent {name!r}")
    return agent


async def _end_sessions(session: AsyncSession, agent_id: int) -> int:
    """Every console session of the agent, and the devices it logged in from: a new password
    starts over everywhere."""
    ended = await session.execute(delete(AgentSession).where(AgentSession.agent_id == agent_id))
    await session.execute(delete(AgentDevice).where(AgentDevice.agent_id == agent_id))
    return int(ended.rowcount)  # type: ignore[attr-defined]


def cmd_agent_add(args: argparse.Namespace) -> int:
    """Create or update a console agent; the password is read from stdin, never an argument."""
    settings = _settings(args)
    password = _read_password(args.name)

    async def work(session: AsyncSession) -> bool:
        agent = await session.scalar(select(Agent).where(Agent.name == args.name))
        created = agent is None
        if agent is None:
            agent = Agent(name=args.name, password_hash="")
            session.add(agent)
            await session.flush()
        else:
            await _end_sessions(session, agent.id)
        agent.password_hash = settings.password_hasher().hash(password)
        agent.is_supervisor = args.supervisor
        session.add(
            AuditEntry(
                action="agent_added" if created else "agent_updated",
                detail={"name": args.name, "supervisor": args.supervisor},
            )
        )
        return created

    created = _on_agents(settings, work)
    role = "supervisor" if args.supervisor else "agent"
    print(f"{role} {args.name} {'added' if created else 'updated'}")
    return 0


def cmd_agent_passwd(args: argparse.Namespace) -> int:
    """A new password for an agent (stdin); every session of the agent ends."""
    settings = _settings(args)
    password = _read_password(args.name)

    async def work(session: AsyncSession) -> int:
        agent = await _agent_named(session, args.name)
        agent.password_hash = settings.password_hasher().hash(password)
        ended = await _end_sessions(session, agent.id)
        session.add(
            AuditEntry(
                action="agent_password_changed",
                detail={"name": args.name, "sessions_ended": ended},
            )
        )
        return ended

    ended = _on_agents(settings, work)
    print(f"password of {args.name} changed; {ended} session(s) ended")
    return 0


def cmd_agent_unlock(args: argparse.Namespace) -> int:
    """Forget the failed logins counted against an agent's name."""
    settings = _settings(args)

    async def work(session: AsyncSession) -> int:
        agent = await _agent_named(session, args.name)
        cleared = await login_guard.unlock(session, agent)
        session.add(
            AuditEntry(action="agent_unlocked", detail={"agent": args.name, "cleared": cleared})
        )
        return cleared

    cleared = _on_agents(settings, work)
    print(f"{args.name} unlocked; {cleared} failed login(s) forgotten")
    return 0


def _capacity(text: str) -> int | None:
    if text == "default":
        return None
    if not text.isdigit() or int(text) > 1000:
        raise argparse.ArgumentTypeError("a capacity is 0 to 1000, or `default`")
    return int(text)


def cmd_agent_set(args: argparse.Namespace) -> int:
    """Change an existing agent: its capacity (`default` follows AGENT_CAPACITY)."""
    settings = _settings(args)

    async def work(session: AsyncSession) -> None:
        agent = await _agent_named(session, args.name)
        agent.capacity = args.capacity
        session.add(
            AuditEntry(
                action="agent_capacity_set", detail={"name": args.name, "capacity": args.capacity}
            )
        )

    _on_agents(settings, work)
    shown = (
        args.capacity
        if args.capacity is not None
        else f"AGENT_CAPACITY ({settings.agent_capacity})"
    )
    print(f"capacity of {args.name}: {shown}")
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
    print(
        f"Agent console: http://{args.host}:{args.port}/agent"
        "  (add an agent: btp-bot agent add NAME [--supervisor], password on stdin)"
    )
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


def cmd_telegram_status(args: argparse.Namespace) -> int:
    from telegram.error import TelegramError

    from bot.channels.telegram_status import telegram_status

    settings = _settings(args)
    if settings.telegram_bot_token is None:
        print("error: TELEGRAM_BOT_TOKEN is not set (see README, Telegram in five steps)")
        return 2
    token = settings.telegram_bot_token.get_secret_value()
    try:
        status = asyncio.run(telegram_status(token, settings.telegram_api_url))
    except TelegramError as exc:
        # PTB's messages name the problem (InvalidToken, NetworkError) and never the token.
        print(f"error: Telegram did not answer: {type(exc).__name__}: {exc}")
        return 1
    print(f"Bot:             @{status.username}")
    if status.webhook_url:
        print(f"Webhook:         {status.webhook_url}")
        configured = settings.telegram_webhook_url
        if configured and configured != status.webhook_url:
            print(f"                 (but TELEGRAM_WEBHOOK_URL here is {configured})")
        print(f"Allowed updates: {', '.join(status.allowed_updates) or 'all'}")
    else:
        print("Webhook:         none (long polling, or the server has not registered it yet)")
    print(f"Pending updates: {status.pending_updates}")
    if status.last_error_at is not None:
        print(f"Last error:      {status.last_error_at.isoformat()} {status.last_error}")
    else:
        print("Last error:      none")
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
    parser.add_argument(
        "--verbose", action="store_true", help="also show the migrations' progress (Alembic)"
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
    check = kb.add_parser("check", help="validate the knowledge files")
    check.add_argument("--dir", help="the folder to check (default: the knowledge folder)")
    check.set_defaults(func=cmd_kb_check)
    export = kb.add_parser("export", help="write the published version as YAML files into DIR")
    export.add_argument("dir")
    export.set_defaults(func=cmd_kb_export)
    imports = kb.add_parser("import", help="check the YAML files in DIR and publish them")
    imports.add_argument("dir")
    imports.add_argument("--by", default="cli", help="who imports (kept in the version's audit)")
    imports.set_defaults(func=cmd_kb_import)

    nlu = commands.add_parser("nlu", help="language understanding").add_subparsers(
        dest="nlu_command", required=True
    )
    parse = nlu.add_parser("parse", help="print the Parse of TEXT as JSON")
    parse.add_argument("text", nargs="+")
    parse.set_defaults(func=cmd_nlu_parse)
    ev = nlu.add_parser(
        "eval",
        help="evaluate on JSON lines {text, expected, oos?}",
        description=_NLU_EVAL_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("file", help="JSON lines: text, expected label, optional oos: near | far")
    ev.add_argument("--json", action="store_true", help="one JSON object with every prediction")
    ev.set_defaults(func=cmd_nlu_eval)

    report = commands.add_parser("report", help="figures").add_subparsers(
        dest="report_command", required=True
    )
    outcomes = report.add_parser(
        "outcomes", help="verified resolution and containment per flow and FAQ entry"
    )
    outcomes.add_argument("--since", default="7d", help="the period back from now: 24h, 7d, 30d")
    outcomes.add_argument("--json", action="store_true", help="print JSON")
    outcomes.set_defaults(func=cmd_report_outcomes)

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

    demo = commands.add_parser("demo", help="the demo world").add_subparsers(
        dest="demo_command", required=True
    )
    demo.add_parser(
        "reset", help="restore the demo world: its orders, logins and unused bind codes"
    ).set_defaults(func=cmd_demo_reset)

    agent = commands.add_parser("agent", help="console agents").add_subparsers(
        dest="agent_command", required=True
    )
    add = agent.add_parser("add", help="add or update an agent; the password is read from stdin")
    add.add_argument("name")
    add.add_argument("--supervisor", action="store_true")
    add.set_defaults(func=cmd_agent_add)
    passwd = agent.add_parser(
        "passwd", help="a new password (read from stdin); ends every session of the agent"
    )
    passwd.add_argument("name")
    passwd.set_defaults(func=cmd_agent_passwd)
    unlock = agent.add_parser("unlock", help="forget the failed logins against an agent's name")
    unlock.add_argument("name")
    unlock.set_defaults(func=cmd_agent_unlock)
    change = agent.add_parser("set", help="change an existing agent")
    change.add_argument("name")
    change.add_argument(
        "--capacity",
        type=_capacity,
        required=True,
        metavar="N",
        help="the most chats assigned at once (0: claims by hand); `default`: AGENT_CAPACITY",
    )
    change.set_defaults(func=cmd_agent_set)

    telegram = commands.add_parser("telegram", help="the Telegram bot").add_subparsers(
        dest="telegram_command", required=True
    )
    telegram.add_parser(
        "status", help="what Telegram reports: the bot, its webhook, pending updates, errors"
    ).set_defaults(func=cmd_telegram_status)

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
    # Every command applies the migrations; their step-by-step lines are noise unless asked for.
    logging.getLogger("alembic").setLevel(logging.INFO if args.verbose else logging.WARNING)
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
