"""Feed onboarding: a feed URL a server admin gives with `/subscribe source:<url>` becomes a source the bot polls.

The URL is checked (http(s), public address, the server's quota), the feed fetched and parsed with the fetcher
and parser the bot passes in, then added as the server's source and polled once, so what it carries now is
stored as backfill and never posted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from yarl import URL

from bot.address_guard import UnsafeAddress, check_public_url
from bot.fetch import Fetcher
from bot.models import Source
from bot.parse import FeedError, ParsedFeed
from bot.store import Store
from bot.subscriptions import REVIVABLE, SubscriptionError, looks_like_url
from bot.text import truncate

log = logging.getLogger(__name__)

MAX_FEED_URL = 2000


class ParseFeed(Protocol):
    """Parse a feed's body (bot.parse.parse_feed, off the event loop); raises FeedError."""

    def __call__(self, body: bytes, *, url: str, content_type: str | None) -> Awaitable[ParsedFeed]: ...


FirstPoll = Callable[[Source], Awaitable[object]]


class FeedOnboarding:
    """Adds the feeds server admins give. `first_poll(source)` stores what a new feed carries now (as backfill)
    and schedules it; `allow_private` is for tests on loopback only."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        parse: ParseFeed,
        *,
        first_poll: FirstPoll,
        max_guild_sources: int,
        max_feed_bytes: int,
        allow_private: bool = False,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.parse = parse
        self.first_poll = first_poll
        self.max_guild_sources = max_guild_sources
        self.max_feed_bytes = max_feed_bytes
        self.allow_private = allow_private

    async def add_feed_source(self, url: str, *, guild_id: int) -> Source:
        """A feed URL given by a server admin: checked, then added as a source owned by that server.

        Refused (SubscriptionError, saying why): not http(s); a private, loopback or link-local address; no
        answer or not a feed; the server already has max_guild_sources feeds. A URL already known is used as
        it is."""
        url = url.strip()
        if not looks_like_url(url) or len(url) > MAX_FEED_URL:
            raise SubscriptionError(f"{url[:200]} is not a feed URL (it must start with https:// or http://)")
        try:
            url = str(URL(url))
        except ValueError:
            raise SubscriptionError(f"{url[:200]} is not a valid URL") from None
        existing = await self.store.sources.get_by_url(url)
        if existing is not None and (existing.owner_guild_id in (None, guild_id) or existing.enabled):
            if existing.enabled:
                return existing
            if existing.disabled_reason not in REVIVABLE:
                raise SubscriptionError(f"the feed {url} is switched off: {existing.disabled_reason}")
        if await self.store.sources.count_owned(guild_id) >= self.max_guild_sources:
            raise SubscriptionError(
                f"this server already added {self.max_guild_sources} feeds, the most it may; unsubscribe from"
                " one it no longer needs, or pick a source the bot already knows"
            )
        name = await self._read_feed_title(url)
        async with self.store.transaction():
            source = await self.store.sources.add(url, truncate(name, 100), owner_guild_id=guild_id)
            if not source.enabled:  # re-added by a server after the bot had left it, or after it was unused
                source = await self.store.sources.revive(source.id or 0, owner_guild_id=guild_id) or source
        await self.first_poll(source)
        log.info("server %d added feed %s as source %d (%s)", guild_id, url, source.id, source.name)
        return source

    async def _read_feed_title(self, url: str) -> str:
        """Fetch and parse the feed (refused when it is not a public, readable feed); its title, else its host."""
        if not self.allow_private:
            try:
                await check_public_url(url)
            except UnsafeAddress as exc:
                raise SubscriptionError(
                    f"refused: {exc.reason}. Feeds added from Discord must be on the public internet"
                ) from None
            except OSError as exc:
                raise SubscriptionError(
                    f"the host of {url} cannot be found ({exc}); check the address"
                ) from None
        result = await self.fetcher.fetch(
            url, max_bytes=self.max_feed_bytes, allow_private=self.allow_private
        )
        if not result.ok or result.body is None:
            raise SubscriptionError(f"the feed could not be read: {result.error or 'no content'}")
        try:
            feed = await self.parse(result.body, url=result.url, content_type=result.content_type)
        except FeedError as exc:
            raise SubscriptionError(f"{url} does not answer with a feed I can read: {exc}") from None
        return feed.title.strip() or URL(url).host or url
