"""The delivery worker: posts queued deliveries to Discord, each once, and keeps subscriptions' health.

Oldest first, channels concurrently, in order within a channel. Every send carries the delivery's nonce with
`enforce_nonce`, and its attempt is committed before the request: after a kill -9 the pending delivery is sent
again and Discord answers with the message it already made instead of a second one. Pacing: the bot's global
limiter (bot/rate_limit.py) for every request, under Discord's global 50 requests/s for all processes together;
per-channel limits are left to discord.py, which honours the rate-limit headers.

Several processes on one database: a delivery is claimed before it is sent (`store.deliveries.claim_due`), only
the oldest pending one of its channel, so one process at a time sends to a channel, in order. A process that
dies loses its claims when their lease runs out; another sends them again with the same nonce.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.delivery_queue import (
    due_deliveries,
    record_edited,
    record_failed,
    record_forbidden,
    record_sent,
    record_transient_failure,
)
from bot.embed import build_story_embed
from bot.models import Delivery, Story
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
EDITS_PER_PASS = 500  # "Also on" edits made in one pass of the worker


class DeliveryWorker:
    """A background service of the bot: `await run()` until cancelled; `wake()` when deliveries are queued."""

    name = "delivery"

    def __init__(
        self,
        bot: commands.Bot | commands.AutoShardedBot,
        store: Store,
        *,
        limiter: GlobalLimiter | None = None,
        concurrency: int = CHANNEL_CONCURRENCY,
        sweep_seconds: float = SWEEP_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.bot = bot
        self.store = store
        self.limiter = limiter or LocalLimiter()  # the bot's global limiter (bot.global_limiter)
        self.sweep_seconds = sweep_seconds
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._active: dict[int, asyncio.Task[None]] = {}  # channel id -> the task sending to it
        self._held: dict[int, int] = {}  # channel id -> the delivery claimed for it now
        self._colors: dict[int, int | None] = {}
        self._listening = False
        self.sent = 0  # messages posted since start (for logs and the benchmark)

    # --- life cycle -------------------------------------------------------------------------------------

    def wake(self) -> None:
        """New deliveries are queued (or a channel may go again): look at the queue now."""
        self._wake.set()

    async def run(self) -> None:
        self._listen()
        renewer = asyncio.create_task(self._renew_claims(), name="delivery: renew claims")
        try:
            while True:
                self._wake.clear()
                try:
                    await self._dispatch()
                    await self._edit_pass()
                    timeout = await self._time_to_next()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:
                    log.exception("delivery pass failed; trying again in %.0f s", self.sweep_seconds)
                    timeout = self.sweep_seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            # a send cut short stays pending with its attempt recorded: the next start resends it, nonce and all
            tasks = [renewer, *self._active.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(
                Exception
            ):  # stopping cleanly: another process may take them over at once
                await self.store.deliveries.release(self.store.owner)

    async def drain(self, within: float = 30.0) -> None:
        """Wait until nothing is due or being sent (tests and benchmarks)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while loop.time() < end:
            if not self._active and not await due_deliveries(self.store, limit=1):
                return
            self.wake()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"deliveries still pending after {within:.0f} s")

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

    async def _time_to_next(self) -> float:
        due = await self.store.deliveries.next_due_at(self.store.owner)
        if due is None:
            return self.sweep_seconds
        return max(0.05, min(self.sweep_seconds, (due - utcnow()).total_seconds() + 0.05))

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

    async def _run_channel(self, first: Delivery) -> None:
        """Send the claimed delivery, then the channel's next ones while they are due and this process gets
        them; a send that has to wait leaves the channel to the main loop."""
        channel_id = first.channel_id
        delivery: Delivery | None = first
        try:
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
        channel = self.bot.get_partial_messageable(delivery.channel_id, guild_id=delivery.guild_id)
        try:
            embed = discord.Embed.from_dict(await self._embed(story, delivery.also_on))
        except Exception as exc:  # a story the embed builder cannot render is a defect to log, not to retry
            log.exception("cannot build the embed of story %d", story.id)
            await record_failed(self.store, delivery, f"the post could not be built: {exc}")
            return True
        started = delivery.attempt_started_at
        if started is not None and utcnow() - started > NONCE_TRUST and embed.url:
            # sent before a crash long ago? Discord no longer remembers the nonce: look at the channel
            message_id = await self._find_posted(channel, embed.url, started)
            if message_id is not None:
                await record_sent(self.store, delivery, message_id)
                return True
        await self.store.deliveries.mark_attempt(delivery.id, at=utcnow())
        delivery.attempts += 1
        try:
            await self.limiter.acquire()
            message = await channel.send(
                embed=embed, nonce=delivery.nonce, allowed_mentions=discord.AllowedMentions.none()
            )
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
        await record_sent(self.store, delivery, message.id)
        self.sent += 1
        return True

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

    async def _embed(self, story: Story, also_on: list[str]) -> dict[str, Any]:
        color = None
        if story.source_id is not None:
            if story.source_id not in self._colors:
                source = await self.store.sources.get(story.source_id)
                self._colors[story.source_id] = source.color if source else None
            color = self._colors[story.source_id]
        return build_story_embed(story, color=color, also_on=tuple(also_on))

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
            channel = self.bot.get_partial_messageable(delivery.channel_id, guild_id=delivery.guild_id)
            try:
                embed = discord.Embed.from_dict(await self._embed(story, delivery.also_on))
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
