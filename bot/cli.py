"""The `kpopnews` command line (contract: run, poll --once, preview, search, trending, sources, copy-db;
plus retag)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

from bot import __version__
from bot.config import Config, ConfigError, load_config
from bot.store import StoreError

EXIT_OK, EXIT_INPUT, EXIT_USAGE = 0, 1, 2


class _StopRequested(Exception):
    """SIGTERM before `run` has its own handlers (while discord.py imports): a clean stop all the same."""


def _stop_early(signum: int, frame: object) -> None:
    raise _StopRequested


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line and exit 2, as the contract says
        self.exit(EXIT_USAGE, f"kpopnews: {message} (see kpopnews --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kpopnews", description="Trending K-pop stories, with artists and fan quotes, on Discord."
    )
    parser.add_argument("--version", action="version", version=f"kpopnews {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--config", metavar="PATH", help="configuration file (default: ./config.toml if present)"
        )
        return p

    command("run", "run the bot until stopped (SIGINT/SIGTERM)")
    p = command("poll", "poll every enabled source once, store new stories, print a summary")
    p.add_argument("--once", action="store_true", required=True, help="one pass, then exit (required)")
    p = command("preview", "show what the bot would post for the stories of feed URLs or files")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="a feed URL or a local feed file")
    p.add_argument("--json", action="store_true", help="one JSON object per story per line")
    p.add_argument(
        "--limit", type=_positive_int, default=None, metavar="N", help="at most N stories per source"
    )
    p.add_argument("--html", metavar="FILE", help="also write a page showing the embeds as Discord would")
    p = command("search", "the latest stories about an artist (any of its names), like /news")
    p.add_argument("artist", nargs="+", metavar="ARTIST")
    p.add_argument("--json", action="store_true", help="one JSON object per story per line")
    p.add_argument(
        "--limit", type=_positive_int, default=5, metavar="N", help="at most N stories (default 5)"
    )
    p = command("trending", "the stories trending now, like /trending")
    p.add_argument(
        "--hours", type=_positive_float, default=24.0, metavar="H", help="time window (default 24)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per story cluster per line")
    p.add_argument(
        "--limit", type=_positive_int, default=10, metavar="N", help="at most N clusters (default 10)"
    )
    p = command(
        "sources", "every source with its health: enabled or disabled (and why), last fetch, next poll"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per source per line")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    p = actions.add_parser(
        "enable", help="re-enable a disabled source at once", description="re-enable a source"
    )
    p.add_argument("name", nargs="+", metavar="NAME", help="the source's name (any case) or its URL")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="configuration file")
    command("retag", "tag every stored story again with the current artist data")
    p = command("copy-db", "copy everything stored into another database (e.g. PostgreSQL), then exit")
    p.add_argument("url", metavar="URL", help="postgresql://user@host:5432/db, or a SQLite file path")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(err)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if args.command == "run" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=err,
    )
    if args.command == "run":
        # until run_bot installs its own handlers, SIGTERM would kill the process mid-start-up (exit -15)
        signal.signal(signal.SIGTERM, _stop_early)
    try:
        config = load_config(args.config)
        return asyncio.run(_dispatch(args, config, out, err))
    except _StopRequested:
        return EXIT_OK
    except (ConfigError, StoreError) as exc:
        print(f"kpopnews: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.command == "run":  # SIGINT is a clean stop for the bot, even during start-up
            return EXIT_OK
        print("kpopnews: interrupted", file=err)
        return 130
    except BrokenPipeError:  # `kpopnews search V | head`: the reader left, which is not an error
        return EXIT_OK
    except Exception as exc:  # a defect: still one line for the user; the traceback only with --verbose
        logging.getLogger("kpopnews").debug("unexpected error", exc_info=True)
        print(f"kpopnews: unexpected error: {type(exc).__name__}: {exc} (run with -v for details)", file=err)
        return EXIT_INPUT


async def _dispatch(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    if args.command == "run":
        from bot.discord_bot import run_bot

        return await run_bot(config)
    if args.command == "poll":
        from bot.poller import run_poll_once
        from bot.retention import drop_old_texts
        from bot.store import Store

        status = await run_poll_once(config, out=out, err=err)
        store = await Store.open_configured(config.storage)
        try:  # old stories' text goes as the bot's hourly run would drop it (one index range: cheap)
            await drop_old_texts(store, config.storage.keep_text_days)
        finally:
            await store.close()
        return status
    if args.command == "preview":
        from bot.preview import run_preview

        return await run_preview(
            config, args.sources, as_json=args.json, limit=args.limit, html_path=args.html, out=out, err=err
        )
    if args.command == "search":
        from bot.search import run_search

        return await run_search(config, " ".join(args.artist), as_json=args.json, limit=args.limit, out=out)
    if args.command == "trending":
        from bot.trending import run_trending

        return await run_trending(config, hours=args.hours, as_json=args.json, limit=args.limit, out=out)
    if args.command == "sources":
        from bot.source_health import enable_source, run_sources

        if args.action == "enable":
            return await enable_source(config, " ".join(args.name), out=out, err=err)
        return await run_sources(config, as_json=args.json, out=out)
    if args.command == "retag":
        from bot.artists import ArtistIndex
        from bot.search import retag_all
        from bot.store import Store

        index = await asyncio.to_thread(ArtistIndex.load)
        store = await Store.open_configured(config.storage, artists=index)
        try:
            count = await retag_all(store, index)
        finally:
            await store.close()
        print(f"retagged {count} stories", file=out)
        return EXIT_OK
    if args.command == "copy-db":
        from bot.store.copy import run_copy_db

        return await run_copy_db(config, args.url, out=out, err=err)
    raise AssertionError(args.command)
