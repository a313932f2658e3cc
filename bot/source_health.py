"""Sources' health as a person reads it: `kpopnews sources`, `kpopnews sources enable NAME`, and the words that
`poll --once` (and /subscriptions) use for a disabled or moved source."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TextIO

from bot.config import Config
from bot.models import Source
from bot.store import Store
from bot.store.sources import REMOVED_FROM_CONFIG
from bot.timeutil import to_iso

EXIT_OK, EXIT_USAGE = 0, 2


def when(moment: datetime) -> str:
    """A moment as the health lines show it: "2024-01-30 03:00 UTC"."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def disabled_text(source: Source) -> str:
    """ "disabled: <why>; next probe 2024-01-30 04:00 UTC" (a source the poller switched off comes back by itself
    when a probe answers with a feed; one switched off by a person is not probed)."""
    text = f"disabled: {source.disabled_reason}"
    if source.probe_at is not None:
        text += f"; next probe {when(source.probe_at)}"
    return text


def address_text(source: Source) -> str | None:
    """Where the source's feed moved, or is moving, by permanent redirect; None when it has not."""
    if source.redirect_to is not None and source.redirects_seen >= 2:
        return (
            f"its feed redirects permanently to {source.redirect_to}, which is another source already: "
            f"polled at {source.url} still"
        )
    if source.redirect_to is not None:
        return f"its feed redirects permanently to {source.redirect_to}: moved there if the next poll says the same"
    if source.moved_from is not None:
        moved = f" on {when(source.moved_at)}" if source.moved_at else ""
        return f"moved from {source.moved_from}{moved} (a permanent redirect, answered twice)"
    return None


def health_json(source: Source, stories: int) -> dict[str, Any]:
    """The contract's `sources --json` object."""
    upcoming = source.next_poll_at if source.enabled else source.probe_at
    return {
        "name": source.name,
        "url": source.url,
        "enabled": source.enabled,
        "reason": source.disabled_reason,
        "last_fetch": to_iso(source.last_fetched_at),
        "next_poll": to_iso(upcoming),
        "stories": stories,
    }


def health_lines(source: Source, stories: int) -> list[str]:
    """A few lines about one source for `kpopnews sources`: name, URL, on or off (and why), fetches."""
    lines = [source.name, f"  {source.url}", f"  {'enabled' if source.enabled else disabled_text(source)}"]
    fetches = f"{stories} {'story' if stories == 1 else 'stories'} stored"
    if source.last_fetched_at is None:
        fetches += "; never fetched"
    else:
        status = (source.last_status or "ok").replace("_", " ")
        outcome = f"failed: {source.last_error}" if source.last_status == "error" else status
        fetches += f"; last fetch {when(source.last_fetched_at)} ({outcome})"
    if source.enabled:
        fetches += (
            f"; next poll {when(source.next_poll_at)}"
            if source.next_poll_at
            else "; next poll at the next pass"
        )
    lines.append(f"  {fetches}")
    address = address_text(source)
    if address:
        lines.append(f"  {address}")
    return lines


async def run_sources(config: Config, *, as_json: bool, out: TextIO) -> int:
    """`kpopnews sources`: every source with its health, as lines or one JSON object per source."""
    store = await Store.open_configured(config.storage)
    try:
        await store.sources.sync_config(config.sources)
        sources = await store.sources.list()
        counts = await store.sources.story_counts()
    finally:
        await store.close()
    for source in sources:
        stories = counts.get(source.id or 0, 0)
        if as_json:
            out.write(json.dumps(health_json(source, stories), ensure_ascii=False) + "\n")
        else:
            out.write("\n".join(health_lines(source, stories)) + "\n")
    return EXIT_OK


async def enable_source(config: Config, name: str, *, out: TextIO, err: TextIO) -> int:
    """`kpopnews sources enable NAME`: switch a disabled source back on now (by name in any case, or by URL)."""
    store = await Store.open_configured(config.storage)
    try:
        await store.sources.sync_config(config.sources)
        wanted = name.strip().casefold()
        found = [
            s
            for s in await store.sources.list()
            if s.name.casefold() == wanted or name.strip() in (s.url, s.moved_from)
        ]
        if not found:
            print(f"kpopnews: no source named {name!r} (`kpopnews sources` lists them)", file=err)
            return EXIT_USAGE
        if len(found) > 1:
            urls = ", ".join(s.url for s in found)
            print(f"kpopnews: {len(found)} sources are named {name!r}; give the URL of one: {urls}", file=err)
            return EXIT_USAGE
        (source,) = found
        if source.enabled:
            print(f"{source.name}: enabled already", file=out)
            return EXIT_OK
        if source.disabled_reason == REMOVED_FROM_CONFIG:
            print(
                f"kpopnews: {source.name} was removed from the configuration; add it back there to enable it",
                file=err,
            )
            return EXIT_USAGE
        assert source.id is not None
        await store.sources.enable(source.id)
    finally:
        await store.close()
    print(f"{source.name}: enabled; polled at the next pass (was {source.disabled_reason})", file=out)
    return EXIT_OK
