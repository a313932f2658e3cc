"""The delivery worker: posts queued deliveries to Discord, each once, and keeps subscriptions' health.

Oldest first, channels concurrently, in order within a channel. Every send carries the delivery's nonce with
`enforce_nonce`, and its attempt is committed before the request: after a kill -9 the pending delivery is sent
again and Discord answers with the message it already made instead of a second one. Pacing: the bot's global
limiter (bot/rate_limit.py) for every request, under Discord's global 50 requests/s for all processes together;
per-channel limits are left to discord.py, which honours the rate-limit headers.

Several processes on one database: a delivery is claimed before it is sent (`store.deliveries.claim_due`), only
the oldest pending one of its channel, so one process at a time sends to a channel, in order. A process that
dies loses its claims when their lease runs out; another sends them again with the same nonce.

Channels by kind (bot/channel_posts.py lays the post out): a text channel gets a message, with a discussion
thread opened on it when asked; an announcement channel gets a message that is then published (crossposted)
while its publish limit allows, else left unpublished; a forum gets a post of its own (the headline as its
name, the tags that fit its artists). Discord keeps no nonce for forum posts: one in doubt after a crash is
looked for among the forum's active posts before posting again. Publishing and threads are recorded before
and after each request (bot/delivery_queue.py), so a restart finishes them without doing them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.channel_posts import (
    DISCUSSION_ARCHIVE_MINUTES,
    ArtistNames,
    ForumTagMatcher,
    forum_requires_tag_error,
    permission_labels,
    ping_content,
    thread_name,
)
from bot.delivery_queue import (
    due_deliveries,
    publish_blocked_until,
    record_edited,
    record_failed,
    record_follow_up_failed,
    record_forbidden,
    record_left_unpublished,
    record_publish_attempt,
    record_publish_limited,
    record_published,
    record_sent,
    record_thread_attempt,
    record_thread_opened,
    record_transient_failure,
)
from bot.embed import build_story_embed
from bot.follows import (
    PAUSED,
    due_direct_messages,
    record_dm_finished,
    record_dm_sent,
    record_dm_transient_failure,
    record_dms_closed,
    story_dm_text,
    summary_dm,
)
from bot.i18n import DEFAULT_LOCALE
from bot.models import (
    CHANNEL_FORUM,
    FOLLOW_UP_ATTEMPTED,
    FOLLOW_UP_PENDING,
    DailySummary,
    Delivery,
    Follower,
    Outgoing,
    Story,
)
from bot.rate_limit import GlobalLimiter, LocalLimiter
from bot.store import Store
from bot.subscriptions import remove_channel, remove_guild
from bot.timeutil import utcnow

log = logging.getLogger(__name__)

CHANNEL_CONCURRENCY = 50  # channels posted to at once; the limiter, not this, sets the pace
SWEEP_SECONDS = 30.0  # look at the queue at least this often, even when nobody wakes the worker
LEASE_SECONDS = 20.0  # a claim on a delivery holds this long unless renewed (renewed every third of it)
NONCE_TRUST = timedelta(
    minutes=4
)  # Discord remembers a nonce a few minutes; older in-doubt sends are checked
UNKNOWN_CHANNEL, UNKNOWN_MESSAGE = 10003, 10008
ALREADY_CROSSPOSTED, TAG_REQUIRED, THREAD_EXISTS = 40033, 40067, 160004  # Discord's error codes
READY_WAIT = 30.0  # seconds a forum post waits for the gateway's cache of the forum (its tags, its posts)
EDITS_PER_PASS = 500  # "Also on" edits made in one pass of the worker


class QueueService:
    """What the channel posts' worker and the followers' DMs' worker share: a loop that sends what is due, then
    sleeps until the next thing is due, the sweep comes, or `wake()` (new work queued). Subclasses say what a
    pass does (`_pass`), when the next thing is due (`_next_due`) and whether anything is left (`_idle`); the
    sends run as tasks in `_active`, cancelled when the loop ends (a send cut short stays pending with its
    attempt recorded: the next start resends it, nonce and all)."""

    name = "queue"

    def __init__(self, *, sweep_seconds: float) -> None:
        self.sweep_seconds = sweep_seconds
        self._wake = asyncio.Event()
        self._active: dict[int, asyncio.Task[None]] = {}  # channel or member id -> the task sending to it

    def wake(self) -> None:
        """New work is queued (or a channel or member may go again): look at the queue now."""
        self._wake.set()

    async def _pass(self) -> None:
        raise NotImplementedError

    async def _next_due(self) -> datetime | None:
        raise NotImplementedError

    async def _idle(self) -> bool:
        raise NotImplementedError

    async def _serve(self) -> None:
        """Run passes until cancelled; a failed pass is logged and tried again at the next sweep."""
        try:
            while True:
                self._wake.clear()
                try:
                    await self._pass()
                    timeout = await self._time_to_next()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:
                    log.exception("%s pass failed; trying again in %.0f s", self.name, self.sweep_seconds)
                    timeout = self.sweep_seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            tasks = list(self._active.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _time_to_next(self) -> float:
        due = await self._next_due()
        if due is None:
            return self.sweep_seconds
        return max(0.05, min(self.sweep_seconds, (due - utcnow()).total_seconds() + 0.05))

    async def drain(self, within: float = 30.0) -> None:
        """Wait until nothing is due or being sent (tests and benchmarks)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while loop.time() < end:
            if not self._active and await self._idle():
                return
            self.wake()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name}: still pending after {within:.0f} s")


class DeliveryWorker(QueueService):
    """A background service of the bot: `await run()` until cancelled; `wake()` when deliveries are queued."""

    name = "delivery"

    def __init__(
        self,
        bot: commands.Bot | commands.AutoShardedBot,
        store: Store,
        *,
        artists: ArtistNames | None = None,
        limiter: GlobalLimiter | None = None,
        concurrency: int = CHANNEL_CONCURRENCY,
        sweep_seconds: float = SWEEP_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        super().__init__(sweep_seconds=sweep_seconds)
        self.bot = bot
        self.store = store
        self.limiter = limiter or LocalLimiter()  # the bot's global limiter (bot.global_limiter)
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self._held: dict[int, int] = {}  # channel id -> the delivery claimed for it now
        self._colors: dict[int, int | None] = {}
        self._listening = False
        self.tags = ForumTagMatcher(artists)  # which of a forum's tags fit a story
        self.sent = 0  # messages posted since start (for logs and the benchmark)
        self.published = 0  # posts published since start, each counted once

    # --- life cycle -------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._listen()
        renewer = asyncio.create_task(self._renew_claims(), name="delivery: renew claims")
        try:
            await self._serve()
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            with contextlib.suppress(
                Exception
            ):  # stopping cleanly: another process may take them over at once
                await self.store.deliveries.release(self.store.owner)

    async def _pass(self) -> None:
        await self._dispatch()
        await self._edit_pass()

    async def _next_due(self) -> datetime | None:
        return await self.store.deliveries.next_due_at(self.store.owner)

    async def _idle(self) -> bool:
        return not await due_deliveries(self.store, limit=1)

    def _listen(self) -> None:
        if self._listening:
            return
        self._listening = True
        self.bot.add_listener(self._on_guild_remove, "on_guild_remove")
        self.bot.add_listener(self._on_channel_delete, "on_guild_channel_delete")

    async def _on_guild_remove(self, guild: discord.Guild) -> None:
        try:
            await remove_guild(self.store, guild.id)
        except Exception:
            log.exception("could not remove the subscriptions of server %s (%d)", guild.name, guild.id)

    async def _on_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        try:
            await remove_channel(self.store, channel.id, reason="the channel was deleted")
        except Exception:
            log.exception("could not remove the subscriptions of deleted channel %d", channel.id)

    # --- sending ----------------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        free = self.concurrency - len(self._active)
        claimed = await self.store.deliveries.claim_due(self.store.owner, utcnow(), self.lease_seconds, free)
        for delivery in claimed:  # oldest first, one per channel
            channel_id = delivery.channel_id
            self._held[channel_id] = delivery.id
            self._active[channel_id] = asyncio.create_task(
                self._run_channel(delivery), name=f"deliver-{channel_id}"
            )
        # posts whose publishing or thread a crash cut short, on channels with nothing else to send: finished here
        # (publishing and threads are safe to try twice: Discord answers that it is done already)
        for channel_id in await self.store.deliveries.follow_up_channels():
            if channel_id not in self._active:
                self._active[channel_id] = asyncio.create_task(
                    self._finish_follow_ups(channel_id), name=f"follow-ups-{channel_id}"
                )

    async def _run_channel(self, first: Delivery) -> None:
        """Send the claimed delivery, then the channel's next ones while they are due and this process gets
        them; a send that has to wait leaves the channel to the main loop."""
        channel_id = first.channel_id
        delivery: Delivery | None = first
        try:
            for unfinished in await self.store.deliveries.follow_ups(channel_id):
                await self._follow_up(unfinished)  # the channel's earlier post first
            while delivery is not None:
                self._held[channel_id] = delivery.id
                if not await self._deliver(delivery):
                    return  # the channel waits (backoff) or is gone; the main loop comes back
                claimed = await self.store.deliveries.claim_due(
                    self.store.owner, utcnow(), self.lease_seconds, 1, channel_id=channel_id
                )
                delivery = claimed[0] if claimed else None
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering to channel %d failed; will retry", channel_id)
        finally:
            held = self._held.pop(channel_id, None)
            self._active.pop(channel_id, None)
            if held is not None:  # not sent (waiting, or failed): any process may take it when it is due
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.deliveries.release(self.store.owner, [held]))
            self.wake()

    async def _finish_follow_ups(self, channel_id: int) -> None:
        try:
            for unfinished in await self.store.deliveries.follow_ups(channel_id):
                await self._follow_up(unfinished)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("finishing the publishing or threads of channel %d failed; will retry", channel_id)
        finally:
            self._active.pop(channel_id, None)

    async def _renew_claims(self) -> None:
        """Keep the claims on the deliveries being sent (a send may wait on the limiter or a rate limit)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if self._held:
                until = utcnow() + timedelta(seconds=self.lease_seconds)
                try:
                    await self.store.deliveries.renew_claims(
                        self.store.owner, list(self._held.values()), until=until
                    )
                except Exception as exc:
                    log.warning("could not renew the claims on %d deliveries: %r", len(self._held), exc)

    async def _deliver(self, queued: Delivery) -> bool:
        """Post one delivery. True: the channel may go on with its next one."""
        # read again: it may have been dropped (unsubscribed) or its Also on list grown since it was queued
        delivery = await self.store.deliveries.get(queued.id)
        if delivery is None or delivery.status != "pending":
            return True
        story = await self.store.stories.get(delivery.story_id)
        if story is None:
            await record_failed(self.store, delivery, "the story is no longer stored")
            return True
        try:
            locale = self._guild_locale(delivery.guild_id)
            embed = discord.Embed.from_dict(await self._embed(story, delivery.also_on, locale))
        except Exception as exc:  # a story the embed builder cannot render is a defect to log, not to retry
            log.exception("cannot build the embed of story %d", story.id)
            await record_failed(self.store, delivery, f"the post could not be built: {exc}")
            return True
        posted: tuple[int, int | None] | None
        try:
            if delivery.kind == CHANNEL_FORUM:
                posted = await self._post_in_forum(delivery, story, embed)
            else:
                posted = await self._post_message(delivery, embed)
        except discord.HTTPException as exc:
            return await self._failed(delivery, exc)
        except discord.RateLimited as exc:  # discord.py's own wait would have been too long
            await self._retry(
                delivery, f"rate limited for {exc.retry_after:.1f} s", retry_after=exc.retry_after
            )
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._retry(delivery, f"network error talking to Discord: {exc!r}")
            return False
        if posted is None:
            return True  # settled without a post (recorded as failed)
        message_id, thread_id = posted
        await record_sent(self.store, delivery, message_id, thread_id=thread_id)
        self.sent += 1
        await self._follow_up(delivery, story)
        return True

    async def _post_message(self, delivery: Delivery, embed: discord.Embed) -> tuple[int, int | None]:
        """A text or announcement channel's message: (its id, None)."""
        channel = self.bot.get_partial_messageable(delivery.channel_id, guild_id=delivery.guild_id)
        started = delivery.attempt_started_at
        if started is not None and utcnow() - started > NONCE_TRUST and embed.url:
            # sent before a crash long ago? Discord no longer remembers the nonce: look at the channel
            message_id = await self._find_posted(channel, embed.url, started)
            if message_id is not None:
                return message_id, None
        await self.store.deliveries.mark_attempt(delivery.id, at=utcnow())
        delivery.attempts += 1
        await self.limiter.acquire()
        message = await channel.send(
            content=ping_content(delivery.ping_role_ids),
            embed=embed,
            nonce=delivery.nonce,
            allowed_mentions=_mentions(delivery.ping_role_ids),
        )
        return message.id, None

    async def _post_in_forum(
        self, delivery: Delivery, story: Story, embed: discord.Embed
    ) -> tuple[int, int] | None:
        """A forum post: (its first message's id, the post's id); None when it cannot be made (recorded)."""
        forum = await self._forum(delivery.channel_id)
        if forum is None:
            await record_failed(
                self.store, delivery, "the channel is no longer a forum: run /subscribe again for it"
            )
            return None
        name = thread_name(story.title)
        if delivery.attempt_started_at is not None and embed.url:
            # Discord keeps no nonce for forum posts: one made before a crash is among the forum's active posts
            post_id = await self._find_forum_post(forum, name, embed.url)
            if post_id is not None:
                return post_id, post_id
        tags = self._tags_for(forum, story)
        if forum.flags.require_tag and not tags:
            await record_failed(self.store, delivery, forum_requires_tag_error(story.artists))
            return None
        await self.store.deliveries.mark_attempt(delivery.id, at=utcnow())
        delivery.attempts += 1
        await self.limiter.acquire()
        try:
            created = await forum.create_thread(
                name=name,
                content=ping_content(delivery.ping_role_ids),
                embed=embed,
                allowed_mentions=_mentions(delivery.ping_role_ids),
                applied_tags=tags,
            )
        except discord.HTTPException as exc:
            if exc.status == 400 and exc.code == TAG_REQUIRED:  # the forum's settings changed under us
                await record_failed(self.store, delivery, forum_requires_tag_error(story.artists))
                return None
            raise
        return created.message.id, created.thread.id

    async def _forum(self, channel_id: int) -> discord.ForumChannel | None:
        """The forum with its tags: from the gateway's cache (waiting a little for it after a start), else
        asked of Discord. None when the channel is not a forum."""
        channel = self.bot.get_channel(channel_id)
        if channel is None and not self.bot.is_ready():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bot.wait_until_ready(), READY_WAIT)
            channel = self.bot.get_channel(channel_id)
        if channel is None:
            await self.limiter.acquire()
            channel = await self.bot.fetch_channel(channel_id)
        return channel if isinstance(channel, discord.ForumChannel) else None

    def _tags_for(self, forum: discord.ForumChannel, story: Story) -> list[discord.ForumTag]:
        """The forum's tags that fit the story's artists, at most 5; moderated tags only when the bot may
        apply them (Manage Threads)."""
        me = forum.guild.me
        moderator = me is not None and forum.permissions_for(me).manage_threads
        usable = [tag for tag in forum.available_tags if moderator or not tag.moderated]
        wanted = set(self.tags.matching([(t.id, t.name) for t in usable], [a.id for a in story.artists]))
        return [tag for tag in usable if tag.id in wanted]

    async def _find_forum_post(self, forum: discord.ForumChannel, name: str, url: str) -> int | None:
        """The id of an active post of ours in the forum with this name whose first message links to `url`."""
        me = self.bot.user
        for thread in forum.threads:
            if me is None or thread.owner_id != me.id or thread.name != name:
                continue
            try:
                await self.limiter.acquire()
                first = await thread.fetch_message(thread.id)  # a post's first message has the post's id
            except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("cannot read forum post %d to check an earlier send (%s)", thread.id, exc)
                continue
            if any(embed.url == url for embed in first.embeds):
                return thread.id
        return None

    # --- after the post: publishing, a discussion thread ------------------------------------------------

    async def _follow_up(self, delivery: Delivery, story: Story | None = None) -> None:
        """Publish the post and open its discussion thread, where asked and not done yet."""
        if delivery.message_id is None:
            return
        if delivery.publish_state in (FOLLOW_UP_PENDING, FOLLOW_UP_ATTEMPTED):
            await self._publish(delivery)
        if delivery.thread_state in (FOLLOW_UP_PENDING, FOLLOW_UP_ATTEMPTED):
            story = story or await self.store.stories.get(delivery.story_id)
            await self._open_thread(delivery, story.title if story is not None else "")

    async def _publish(self, delivery: Delivery) -> None:
        """Crosspost an announcement channel's post, once; past the channel's publish limit it stays as it is."""
        assert delivery.message_id is not None
        if await publish_blocked_until(self.store, delivery.channel_id) is not None:
            await record_left_unpublished(self.store, delivery)
            return
        channel = self.bot.get_partial_messageable(delivery.channel_id, guild_id=delivery.guild_id)
        await record_publish_attempt(self.store, delivery)
        try:
            await self.limiter.acquire()
            await channel.get_partial_message(delivery.message_id).publish()
        except discord.RateLimited as exc:  # the publish limit: an hour's wait, never slept through
            await record_publish_limited(self.store, delivery, retry_after=exc.retry_after)
            return
        except discord.HTTPException as exc:
            if exc.status == 429:
                await record_publish_limited(self.store, delivery, retry_after=_retry_after(exc))
                return
            if exc.status != 400 or exc.code != ALREADY_CROSSPOSTED:  # that one: published before a restart
                await record_follow_up_failed(
                    self.store, delivery, thread=False, error=_publish_error(_describe(exc), exc)
                )
                return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = f"a post could not be published (network error: {exc!r}); it stays unpublished"
            await record_follow_up_failed(self.store, delivery, thread=False, error=error)
            return
        if await record_published(self.store, delivery):
            self.published += 1

    async def _open_thread(self, delivery: Delivery, title: str) -> None:
        """Open the discussion thread on the post, once (Discord refuses a second: that counts as done)."""
        assert delivery.message_id is not None
        await record_thread_attempt(self.store, delivery)
        try:
            await self.limiter.acquire()
            data = await self.bot.http.start_thread_with_message(
                delivery.channel_id,
                delivery.message_id,
                name=thread_name(title),
                auto_archive_duration=DISCUSSION_ARCHIVE_MINUTES,
            )
            thread_id = int(data["id"])
        except discord.HTTPException as exc:
            if exc.status != 400 or exc.code != THREAD_EXISTS:
                error = f"a discussion thread could not be opened: {_describe(exc)}"
                if isinstance(exc, discord.Forbidden):
                    error += (
                        f"; give the bot {permission_labels(delivery.kind, threads=True)} in that channel"
                    )
                await record_follow_up_failed(self.store, delivery, thread=True, error=error)
                return
            thread_id = delivery.message_id  # opened before a restart: a thread takes its message's id
        except (discord.RateLimited, aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = f"a discussion thread could not be opened: {exc!r}"
            await record_follow_up_failed(self.store, delivery, thread=True, error=error)
            return
        await record_thread_opened(self.store, delivery, thread_id)

    async def _failed(self, delivery: Delivery, exc: discord.HTTPException) -> bool:
        reason = _describe(exc)
        if isinstance(exc, discord.Forbidden):
            await record_forbidden(self.store, delivery, reason)
            self.wake()
            return False
        # only Discord's own "Unknown Channel": a bare 404 (a misconfigured api_base) must not delete anything
        if isinstance(exc, discord.NotFound) and exc.code == UNKNOWN_CHANNEL:
            await remove_channel(self.store, delivery.channel_id, reason=f"Discord says: {reason}")
            return False
        if exc.status == 429 or exc.status >= 500:
            await self._retry(delivery, reason, retry_after=_retry_after(exc))
            return False
        if exc.status == 401:
            await self._retry(delivery, f"{reason}: the bot's token was rejected")
            return False
        # 400 and the rest: Discord will refuse it again; never retried in a loop
        log.error(
            "Discord refused delivery %d (story %d) to channel %d: %s",
            delivery.id,
            delivery.story_id,
            delivery.channel_id,
            reason,
        )
        await record_failed(self.store, delivery, reason)
        return True

    async def _retry(self, delivery: Delivery, reason: str, *, retry_after: float | None = None) -> None:
        will = await record_transient_failure(self.store, delivery, reason, retry_after=retry_after)
        log.warning(
            "delivery %d to channel %d: %s; %s",
            delivery.id,
            delivery.channel_id,
            reason,
            "will retry" if will else "given up",
        )
        self.wake()  # the main loop recomputes when to look again

    async def _find_posted(self, channel: Any, url: str, since: datetime) -> int | None:
        """The id of a message of ours in the channel whose embed links to `url`, if one exists."""
        me = self.bot.user
        try:
            await self.limiter.acquire()
            async for message in channel.history(limit=50, after=since - timedelta(seconds=5)):
                if me is not None and message.author.id != me.id:
                    continue
                if any(embed.url == url for embed in message.embeds):
                    return message.id
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("cannot read channel %s to check an earlier send (%s); sending again", channel.id, exc)
        return None

    def _guild_locale(self, guild_id: int | None) -> str:
        """The server's preferred locale (a Community server's primary language) from the gateway's cache, for
        a post's fixed words; English when the server is not cached."""
        guild = self.bot.get_guild(guild_id) if guild_id is not None else None
        return str(guild.preferred_locale) if guild is not None else DEFAULT_LOCALE

    async def _embed(self, story: Story, also_on: list[str], locale: object) -> dict[str, Any]:
        color = None
        if story.source_id is not None:
            if story.source_id not in self._colors:
                source = await self.store.sources.get(story.source_id)
                self._colors[story.source_id] = source.color if source else None
            color = self._colors[story.source_id]
        return build_story_embed(story, color=color, also_on=tuple(also_on), locale=locale)

    # --- "Also on" edits --------------------------------------------------------------------------------

    async def _edit_pass(self) -> None:
        claimed = await self.store.deliveries.claim_edits(
            self.store.owner, utcnow(), self.lease_seconds, EDITS_PER_PASS
        )
        for delivery in claimed:  # a claim left on a failed edit runs out: it is tried again then
            story = await self.store.stories.get(delivery.story_id)
            if story is None or delivery.message_id is None:
                await record_edited(self.store, delivery, gave_up=True)
                continue
            # a forum post's first message is in the post (a thread), not in the forum
            where = delivery.thread_id if delivery.kind == CHANNEL_FORUM and delivery.thread_id else None
            channel = self.bot.get_partial_messageable(
                where or delivery.channel_id, guild_id=delivery.guild_id
            )
            try:
                locale = self._guild_locale(delivery.guild_id)
                embed = discord.Embed.from_dict(await self._embed(story, delivery.also_on, locale))
                await self.limiter.acquire()
                await channel.get_partial_message(delivery.message_id).edit(
                    embed=embed, allowed_mentions=discord.AllowedMentions.none()
                )
            except discord.HTTPException as exc:
                if exc.status == 429 or exc.status >= 500:
                    log.info("Also on edit of message %d: %s; later", delivery.message_id, _describe(exc))
                    continue
                # deleted message, lost access, refused edit: an Also on line is not worth more tries
                log.info("Also on edit of message %d given up: %s", delivery.message_id, _describe(exc))
                await record_edited(self.store, delivery, gave_up=True)
                continue
            except (discord.RateLimited, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("Also on edit of message %d: %r; later", delivery.message_id, exc)
                continue
            await record_edited(self.store, delivery)


def _mentions(role_ids: list[int]) -> discord.AllowedMentions:
    """Exactly the roles the post pings, never @everyone, @here or a user, whatever the text holds."""
    if not role_ids:
        return discord.AllowedMentions.none()
    return discord.AllowedMentions(
        everyone=False, users=False, roles=[discord.Object(r) for r in role_ids], replied_user=False
    )


def _publish_error(reason: str, exc: discord.HTTPException) -> str:
    text = f"a post could not be published: {reason}; it stays posted, unpublished"
    if isinstance(exc, discord.Forbidden):
        text += "; give the bot Send Messages in that channel"
    return text


def _describe(exc: discord.HTTPException) -> str:
    """Discord's answer in one line: status, code and its reason."""
    status = getattr(exc, "status", None)
    text = (exc.text or "").replace("\n", " ").strip()
    code = f" (error code {exc.code})" if getattr(exc, "code", 0) else ""
    reason = getattr(getattr(exc, "response", None), "reason", "") or ""
    return f"{status} {reason}{code}: {text}".strip().rstrip(":")


def _retry_after(exc: discord.HTTPException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


# --- direct messages to followers (bot/follows.py) --------------------------------------------------------------

MEMBER_CONCURRENCY = 50  # members DMed at once; the shared limiter, not this, sets the pace
UNKNOWN_USER, INVALID_RECIPIENT = 10013, 50033  # the member's account is gone: as unreachable as closed DMs


@dataclass
class _DirectMessageBody:
    content: str
    embed: dict[str, Any]
    sent_as: Callable[
        [discord.Message], bool
    ]  # whether a message in the DM channel is this one (a send in doubt)


DM_SENDER_LOCK = "direct-messages"  # held by the one process that sends the followers' DMs
DM_SENDER_RETRY = 2.0  # seconds between a waiting process's tries to take the DMs over


class DirectMessageWorker(QueueService):
    """A background service: sends the followers' direct messages, each once; `wake()` when some are queued.

    Paced by the delivery worker's limiter, so that posts and DMs together stay under Discord's global limit.
    Members concurrently, in order for each member. Exactly once as for channel posts: the nonce with
    `enforce_nonce`, the attempt committed before the request, and a look in the DM channel for a send in
    doubt for longer than Discord remembers nonces. The DM channel is opened once (POST /users/@me/channels)
    and kept in the store: a story costs a follower one request. A member whose DMs are closed is paused
    (bot/follows.py) and sent nothing more."""

    name = "direct-messages"

    def __init__(
        self,
        bot: commands.Bot | commands.AutoShardedBot,
        store: Store,
        *,
        posts: DeliveryWorker,
        most_per_day: int,
        concurrency: int = MEMBER_CONCURRENCY,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        super().__init__(sweep_seconds=sweep_seconds)
        self.bot = bot
        self.store = store
        self.posts = posts  # its limiter paces every request; its story embeds are the DMs' too
        self.most_per_day = most_per_day  # named in the daily summary
        self._slots = asyncio.Semaphore(concurrency)
        self._recheck: set[int] = set()
        self.sent = 0  # DMs sent since start (for logs and the benchmark)

    async def run(self) -> None:
        """Send DMs until cancelled. Several processes on one database: one of them sends the followers' DMs at
        a time (it holds the store's lock; when it dies, the lock goes with its connection and another process
        takes over, resending what was in doubt with the same nonces)."""
        while True:
            async with self.store.locks.try_lock(DM_SENDER_LOCK) as held:
                if held:
                    await self._serve()
                    return
            await asyncio.sleep(DM_SENDER_RETRY)

    async def _pass(self) -> None:
        await self._dispatch()

    async def _next_due(self) -> datetime | None:
        return await self.store.direct_messages.next_due_at()

    async def _idle(self) -> bool:
        return not await due_direct_messages(self.store, limit=1)

    async def _dispatch(self) -> None:
        for user_id in await due_direct_messages(self.store):  # oldest first
            if user_id in self._active:
                self._recheck.add(user_id)  # its task looks again before it ends
                continue
            self._active[user_id] = asyncio.create_task(self._run_member(user_id), name=f"dm-{user_id}")

    async def _run_member(self, user_id: int) -> None:
        try:
            async with self._slots:
                while True:
                    self._recheck.discard(user_id)
                    batch = (await due_direct_messages(self.store, user_id=user_id)).get(user_id)
                    if not batch:
                        if user_id in self._recheck:
                            continue
                        return
                    for item in batch:
                        if not await self._send(item):
                            return  # the member waits (backoff) or is paused; the main loop comes back
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("direct messages to member %d failed; will retry", user_id)
        finally:
            self._active.pop(user_id, None)

    async def _send(self, queued: Outgoing) -> bool:
        """Send one DM or daily summary. True: the member may go on with the next one."""
        item = await self.store.direct_messages.reread(queued)  # unfollowed or paused since it was queued?
        if item is None or item.status != "pending":
            return True
        follower = await self.store.follows.follower(item.user_id)
        if follower is None or follower.paused:  # never a DM to a paused member
            await record_dm_finished(self.store, item, status="dropped", error=PAUSED)
            return True
        try:
            body = await self._body(item, follower)
        except Exception as exc:  # a DM that cannot be built is a defect to log, not to retry
            log.exception("cannot build direct message %d for member %d", item.id, item.user_id)
            await record_dm_finished(
                self.store, item, status="failed", error=f"the DM could not be built: {exc}"
            )
            return True
        if body is None:
            await record_dm_finished(self.store, item, status="dropped", error="nothing left to send")
            return True
        try:
            channel = await self._dm_channel(follower)
            started = item.attempt_started_at
            if started is not None and utcnow() - started > NONCE_TRUST:
                # sent before a crash long ago? Discord no longer remembers the nonce: look at the DM channel
                message_id = await self._find_sent(channel, body, started)
                if message_id is not None:
                    await record_dm_sent(self.store, item, message_id)
                    return True
            await self.store.direct_messages.mark_attempt(item, at=utcnow())
            item.attempts += 1
            await self.posts.limiter.acquire()
            message = await channel.send(
                content=body.content,
                embed=discord.Embed.from_dict(body.embed),
                nonce=item.nonce,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            return await self._failed(item, exc)
        except discord.RateLimited as exc:  # discord.py's own wait would have been too long
            await self._retry(item, f"rate limited for {exc.retry_after:.1f} s", retry_after=exc.retry_after)
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._retry(item, f"network error talking to Discord: {exc!r}")
            return False
        await record_dm_sent(self.store, item, message.id)
        self.sent += 1
        return True

    async def _body(self, item: Outgoing, follower: Follower) -> _DirectMessageBody | None:
        """What the DM says, in the member's locale; None when nothing is left to send (a summary whose stories
        were all unfollowed)."""
        if isinstance(item, DailySummary):
            lines = await self.store.direct_messages.summary_lines(item.user_id, item.day)
            stories = await self.store.stories.get_many([line.story_id for line in lines])
            if not stories:
                return None
            content, embed = summary_dm(stories, follower.locale, most_per_day=self.most_per_day)
            title = embed.get("title")
            return _DirectMessageBody(content, embed, lambda m: any(e.title == title for e in m.embeds))
        story = await self.store.stories.get(item.story_id)
        if story is None:
            return None
        index = getattr(self.bot, "artists", None)
        artist = index.get(item.artist_id) if index is not None else None
        content = story_dm_text(artist.label if artist is not None else item.artist_id, follower.locale)
        embed = await self.posts._embed(story, [], follower.locale)  # the member's words, as the intro
        url = embed.get("url")
        return _DirectMessageBody(
            content, embed, lambda m: url is not None and any(e.url == url for e in m.embeds)
        )

    async def _dm_channel(self, follower: Follower) -> Any:
        """The bot's DM channel with the member: the stored one, else opened now (one request) and stored."""
        if follower.dm_channel_id is not None:
            return self.bot.get_partial_messageable(follower.dm_channel_id, type=discord.ChannelType.private)
        await self.posts.limiter.acquire()
        channel = await self.bot.create_dm(discord.Object(id=follower.user_id))
        await self.store.follows.set_dm_channel(follower.user_id, channel.id)
        follower.dm_channel_id = channel.id
        return channel

    async def _find_sent(self, channel: Any, body: _DirectMessageBody, since: datetime) -> int | None:
        """The id of a message of ours in the DM channel that is this DM, if one exists."""
        me = self.bot.user
        try:
            await self.posts.limiter.acquire()
            async for message in channel.history(limit=50, after=since - timedelta(seconds=5)):
                if (me is None or message.author.id == me.id) and body.sent_as(message):
                    return message.id
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info(
                "cannot read DM channel %s to check an earlier send (%s); sending again", channel.id, exc
            )
        return None

    async def _failed(self, item: Outgoing, exc: discord.HTTPException) -> bool:
        reason = _describe(exc)
        if isinstance(exc, discord.Forbidden) or exc.code in (UNKNOWN_USER, INVALID_RECIPIENT):
            # 50007: DMs closed (or no server shared): never retried; the member is told at their next command
            await record_dms_closed(self.store, item.user_id, reason)
            return False
        if isinstance(exc, discord.NotFound) and exc.code == UNKNOWN_CHANNEL:
            await self.store.follows.set_dm_channel(item.user_id, None)  # opened again at the next try
            await self._retry(item, reason)
            return False
        if exc.status == 429 or exc.status >= 500:
            await self._retry(item, reason, retry_after=_retry_after(exc))
            return False
        if exc.status == 401:
            await self._retry(item, f"{reason}: the bot's token was rejected")
            return False
        # 400 and the rest: Discord will refuse it again; never retried in a loop
        await record_dm_finished(self.store, item, status="failed", error=reason)
        return True

    async def _retry(self, item: Outgoing, reason: str, *, retry_after: float | None = None) -> None:
        will = await record_dm_transient_failure(self.store, item, reason, retry_after=retry_after)
        log.warning(
            "direct message %d to member %d: %s; %s",
            item.id,
            item.user_id,
            reason,
            "will retry" if will else "given up",
        )
        self.wake()  # the main loop recomputes when to look again
