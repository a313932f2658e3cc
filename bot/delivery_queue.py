"""The delivery queue: which channel gets which story, when it is due, and what a send's outcome does to it.

No Discord and no SQL here: the pipeline queues (bot/pipeline.py), the delivery worker (bot/delivery.py) sends
and reports back, and the rows live in the store (`store.deliveries`, `store.subscriptions`).
A delivery is one (channel, story cluster) pair, unique, so a channel gets a story once whatever number of its
subscriptions match it (their options merged: bot.subscriptions.ChannelPost); its nonce makes a resend after a
crash idempotent on Discord's side. What follows a post (publishing it, a discussion thread on it) has a state
of its own, committed before each request, so a restart finishes it without doing it twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime, timedelta

from bot.channel_posts import permission_labels
from bot.config import DeliveryConfig
from bot.models import (
    CHANNEL_ANNOUNCEMENT,
    FOLLOW_UP_ATTEMPTED,
    FOLLOW_UP_DONE,
    FOLLOW_UP_FAILED,
    FOLLOW_UP_PENDING,
    PUBLISH_LIMITED,
    STATUS_PAUSED,
    STATUS_UNHEALTHY,
    Delivery,
    HeldPost,
    StoryFacts,
    Subscription,
    TrendingOffer,
)
from bot.store import Store
from bot.subscriptions import ChannelPost, ExpandArtist, SubscriptionIndex, posts_per_channel
from bot.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_FORBIDDEN_FAILURES = 4  # refusals (403) in a row before a subscription is paused until an admin acts
FORBIDDEN_BACKOFF = (timedelta(minutes=5), timedelta(hours=6))  # first retry after a 403, and the cap
MAX_SEND_ATTEMPTS = 8  # transient failures (5xx, network) before one delivery is given up
TRANSIENT_BACKOFF = (timedelta(seconds=2), timedelta(minutes=10))
MAX_ALSO_ON_EDITS = 3  # a message is edited for "Also on" a few times at most, not forever
MAX_ALSO_ON = 5  # outlets named in one "Also on" line
NONCE_MAX = 25  # Discord's limit on a message nonce
DUE_LIMIT = 5000  # pending deliveries looked at in one pass
PUBLISH_LIMIT_WINDOW = 3600.0  # Discord's publish limit is per hour, when its 429 gives no delay


def delivery_nonce(channel_id: int, story_key: str) -> str:
    """Discord's message nonce for a delivery: the same for every resend of it, at most 25 characters.

    Built from the channel and the story's key (not database ids) so it stays unique across databases."""
    digest = hashlib.sha256(f"{channel_id}\n{story_key}".encode()).hexdigest()
    return ("kn" + digest)[: NONCE_MAX - 1]


# --- queueing -------------------------------------------------------------------------------------------------


async def queue_deliveries(
    store: Store,
    story_ids: list[int],
    *,
    config: DeliveryConfig,
    expand: ExpandArtist | None,
    now: datetime | None = None,
    trending: bool = False,
) -> int:
    """Queue one delivery per (channel, story cluster) for the subscriptions these stories match.

    A story matches a subscription when: its id is above the subscription's start_story_id; it is not
    backfill; it was published (else first seen) within max_age_hours; the subscription is not paused; its
    only_trending flag equals `trending`; its artist is one of the story's artists or a group one of them is in
    (`expand`: the artist index's; None without one); its source carried the story. When a channel already has
    the story's cluster, an outlet new to it is added to the "Also on" list (and the sent message marked for an
    edit). One transaction. Returns the number of deliveries queued."""
    if not story_ids:
        return 0
    now = now or utcnow()
    stories = await postable_stories(store, story_ids, config=config, now=now)
    if not stories:
        return 0
    async with store.transaction():
        subscriptions = await store.subscriptions.to_match(
            only_trending=trending, below_story_id=max(s.id for s in stories)
        )
        if not subscriptions:
            return 0
        index = SubscriptionIndex(subscriptions, expand)
        # one read for the posts the channels have of these clusters already; matching a batch against every
        # subscription is CPU work (thousands of pairs): in a worker thread, the event loop stays free
        held = await store.deliveries.in_clusters(sorted({s.cluster_id for s in stories}))
        new, changed = await asyncio.to_thread(_plan_deliveries, stories, index, held, now)
        await store.deliveries.add_many(new)
        taken: list[Delivery] = []
        if new and store.shared:
            # another process may have queued some of these posts since they were read (its insert won): their
            # outlets go under its post, as if it had been read in time
            stored = await store.deliveries.in_clusters(sorted({d.cluster_id for d in new}))
            for ours in new:
                theirs = stored.get((ours.channel_id, ours.cluster_id))
                if theirs is not None and theirs.story_id != ours.story_id:
                    taken.append(ours)
                    if any([_name_outlet(theirs, name) for name in (ours.story_source, *ours.also_on)]):
                        changed.append(theirs)
        await store.deliveries.set_also_on_many([(d.id, d.also_on, d.edit_pending) for d in changed])
    queued = len(new) - len(taken)
    if queued:
        log.info("queued %d deliveries for %d stories", queued, len(stories))
    return queued


def _plan_deliveries(
    stories: list[StoryFacts],
    index: SubscriptionIndex,
    held: dict[tuple[int, int], HeldPost],
    now: datetime,
) -> tuple[list[Delivery], list[Delivery | HeldPost]]:
    """The deliveries to queue for these stories (a channel gets a story cluster once: its first story, in id
    order, is the post) and the channels' posts whose "Also on" list the others changed (`held`: the posts the
    channels have of these clusters already, changed in place)."""
    # stories about the same acts match the same subscriptions: their posts per channel are made once
    posts: dict[tuple[int, ...], dict[int, ChannelPost]] = {}
    new: dict[tuple[int, int], Delivery] = {}
    changed: dict[int, Delivery | HeldPost] = {}
    for story in stories:
        matches = index.matching(story)
        ids = tuple(sub.id for sub in matches)
        if ids not in posts:
            posts[ids] = posts_per_channel(matches)
        for channel_id, post in posts[ids].items():
            key = (channel_id, story.cluster_id)
            if key in held:
                if _note_also_on(held[key], story):
                    changed[held[key].id] = held[key]
            elif key in new:
                _note_also_on(new[key], story)
            else:
                new[key] = _delivery(story, post, now)
                new[key].story_source = story.source_name
    return list(new.values()), list(changed.values())


async def postable_stories(
    store: Store, story_ids: list[int], *, config: DeliveryConfig, now: datetime
) -> list[StoryFacts]:
    """The facts of the stories that may be posted (to channels, and by DM to followers), in id order: not
    backfill, and published (else first seen) within max_age_hours."""
    oldest = now - timedelta(hours=config.max_age_hours)
    return [
        s
        for s in await store.deliveries.story_facts(sorted(set(story_ids)))
        if not s.backfill and s.moment is not None and s.moment >= oldest
    ]


def _delivery(story: StoryFacts, post: ChannelPost, now: datetime) -> Delivery:
    sub = post.subscription
    # an unhealthy channel's new posts wait for its retry time, behind the ones already waiting
    wait = sub.retry_at if sub.retry_at and sub.retry_at > now else None
    return Delivery(
        story_id=story.id,
        cluster_id=story.cluster_id,
        guild_id=sub.guild_id,
        channel_id=sub.channel_id,
        subscription_id=sub.id,
        nonce=delivery_nonce(sub.channel_id, story.key),
        next_attempt_at=wait,
        created_at=now,
        kind=post.kind,
        ping_role_ids=list(post.ping_role_ids),
        thread_state=FOLLOW_UP_PENDING if post.thread else None,
        publish_state=FOLLOW_UP_PENDING if post.kind == CHANNEL_ANNOUNCEMENT else None,
    )


def _note_also_on(delivery: Delivery | HeldPost, story: StoryFacts) -> bool:
    """Another outlet's story joined a cluster this channel has: name that outlet under the post (in
    `delivery`). Returns whether anything changed."""
    return delivery.story_id != story.id and _name_outlet(delivery, story.source_name)


def _name_outlet(delivery: Delivery | HeldPost, name: str | None) -> bool:
    if not name or name == delivery.story_source or name in delivery.also_on:
        return False
    if len(delivery.also_on) >= MAX_ALSO_ON:
        return False
    delivery.also_on = [*delivery.also_on, name]
    # a pending post shows the list when it is sent; a sent one is edited, a few times at most
    delivery.edit_pending = delivery.edit_pending or (
        delivery.status == "sent" and delivery.edits < MAX_ALSO_ON_EDITS
    )
    return True


async def offer_trending(
    store: Store,
    offers: list[TrendingOffer],
    *,
    config: DeliveryConfig,
    expand: ExpandArtist | None,
    now: datetime | None = None,
) -> int:
    """Queue trending clusters (bot.trending.trending_offers) for the trending-only subscriptions and record
    each as offered, in one transaction. Returns the number of deliveries queued."""
    now = now or utcnow()
    queued = 0
    async with store.transaction():
        for offer in offers:
            # the cluster's first story leads: queue_deliveries takes them in id order, one post per channel
            queued += await queue_deliveries(
                store, offer.story_ids, config=config, expand=expand, now=now, trending=True
            )
            await store.deliveries.record_trending(offer, at=now)
    return queued


# --- sending --------------------------------------------------------------------------------------------------


async def due_deliveries(
    store: Store, *, now: datetime | None = None, channel_id: int | None = None, limit: int = DUE_LIMIT
) -> dict[int, list[Delivery]]:
    """Pending deliveries that may be sent now, per channel, oldest first.

    A channel whose oldest pending delivery waits (backoff) sends nothing: posts keep their order."""
    now = now or utcnow()
    result: dict[int, list[Delivery]] = {}
    blocked: set[int] = set()
    for delivery in await store.deliveries.pending(channel_id=channel_id, limit=limit):
        if delivery.channel_id in blocked:
            continue
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            blocked.add(delivery.channel_id)
            continue
        result.setdefault(delivery.channel_id, []).append(delivery)
    return result


async def record_sent(
    store: Store,
    delivery: Delivery,
    message_id: int,
    *,
    thread_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """The post is on Discord: mark it sent with its message id (and a forum post's id), and the channel's
    subscriptions healthy."""
    moment = now or utcnow()
    async with store.transaction():
        await store.deliveries.mark_sent(delivery.id, message_id, at=moment, thread_id=thread_id)
        await store.subscriptions.record_post(delivery.channel_id, at=moment)
    delivery.status, delivery.message_id, delivery.sent_at = "sent", message_id, moment
    delivery.thread_id = thread_id if thread_id is not None else delivery.thread_id


# --- after the post: a discussion thread, publishing -----------------------------------------------------------


async def record_thread_attempt(store: Store, delivery: Delivery) -> None:
    """Committed before the request: after a crash the thread is asked for again (Discord answers that one
    exists, which counts as done)."""
    await store.deliveries.set_thread_state(delivery.id, FOLLOW_UP_ATTEMPTED)
    delivery.thread_state = FOLLOW_UP_ATTEMPTED


async def record_thread_opened(store: Store, delivery: Delivery, thread_id: int) -> None:
    await store.deliveries.set_thread_state(delivery.id, FOLLOW_UP_DONE, thread_id=thread_id)
    delivery.thread_state, delivery.thread_id = FOLLOW_UP_DONE, thread_id


async def record_publish_attempt(store: Store, delivery: Delivery) -> None:
    """Committed before the request: after a crash the publish is asked for again (Discord answers that the
    message is published already, which counts as done, once)."""
    await store.deliveries.set_publish_state(delivery.id, FOLLOW_UP_ATTEMPTED)
    delivery.publish_state = FOLLOW_UP_ATTEMPTED


async def record_published(store: Store, delivery: Delivery) -> bool:
    """The post is published. False when it had been counted already."""
    counted = await store.deliveries.set_publish_state(delivery.id, FOLLOW_UP_DONE)
    delivery.publish_state = FOLLOW_UP_DONE
    return counted


async def publish_blocked_until(
    store: Store, channel_id: int, *, now: datetime | None = None
) -> datetime | None:
    """When the channel's publish limit lets it publish again, if it is reached now."""
    resumes_at = await store.subscriptions.publish_resumes_at(channel_id)
    return resumes_at if resumes_at is not None and resumes_at > (now or utcnow()) else None


async def record_publish_limited(
    store: Store, delivery: Delivery, *, retry_after: float | None, now: datetime | None = None
) -> None:
    """Discord's publish limit (429 on the crosspost route): the post stays posted and unpublished, never
    retried; the channel publishes nothing until the limit resets, and /subscriptions says so."""
    now = now or utcnow()
    async with store.transaction():
        await store.deliveries.set_publish_state(delivery.id, PUBLISH_LIMITED)
        if await publish_blocked_until(store, delivery.channel_id, now=now) is None:
            resumes_at = now + timedelta(seconds=retry_after if retry_after else PUBLISH_LIMIT_WINDOW)
            # reached with this post: from its time on, unpublished posts are counted
            at = min(now, delivery.sent_at) if delivery.sent_at is not None else now
            await store.subscriptions.record_publish_limit(delivery.channel_id, at=at, resumes_at=resumes_at)
    delivery.publish_state = PUBLISH_LIMITED
    log.info(
        "channel %d reached the publish limit: delivery %d left unpublished", delivery.channel_id, delivery.id
    )


async def record_left_unpublished(store: Store, delivery: Delivery) -> None:
    """The channel's publish limit is still reached: this post stays unpublished (counted in /subscriptions)."""
    await store.deliveries.set_publish_state(delivery.id, PUBLISH_LIMITED)
    delivery.publish_state = PUBLISH_LIMITED


async def record_follow_up_failed(
    store: Store, delivery: Delivery, *, thread: bool, error: str, now: datetime | None = None
) -> None:
    """Discord refused the discussion thread (`thread`) or the publishing: not tried again; the reason shows on
    the subscription."""
    async with store.transaction():
        if thread:
            await store.deliveries.set_thread_state(delivery.id, FOLLOW_UP_FAILED)
        else:
            await store.deliveries.set_publish_state(delivery.id, FOLLOW_UP_FAILED)
        if delivery.subscription_id is not None:
            await store.subscriptions.record_error(delivery.subscription_id, error, at=now or utcnow())
    if thread:
        delivery.thread_state = FOLLOW_UP_FAILED
    else:
        delivery.publish_state = FOLLOW_UP_FAILED
    log.warning("delivery %d to channel %d: %s", delivery.id, delivery.channel_id, error)


def _backoff(failures: int, bounds: tuple[timedelta, timedelta]) -> timedelta:
    first, cap = bounds
    return min(cap, first * (2 ** max(0, failures - 1)))


async def record_forbidden(
    store: Store, delivery: Delivery, reason: str, *, now: datetime | None = None
) -> Subscription | None:
    """Discord refused the post (403): the channel's subscriptions become unhealthy and retry with backoff;
    after MAX_FORBIDDEN_FAILURES refusals in a row they are paused (an admin resumes with /subscribe).
    Returns the delivery's subscription as updated."""
    now = now or utcnow()
    async with store.transaction():
        failures = await store.subscriptions.channel_failures(delivery.channel_id) + 1
        paused = failures >= MAX_FORBIDDEN_FAILURES
        retry_at = now + _backoff(failures, FORBIDDEN_BACKOFF)
        todo = f"give the bot {permission_labels(delivery.kind)} in that channel"
        if paused:
            todo += ", then run /subscribe again with the same options to resume"
        text = f"Discord refused the post: {reason}. " + (
            f"Paused after {failures} refusals: {todo}." if paused else f"Retrying automatically; {todo}."
        )
        await store.subscriptions.record_refusal(
            delivery.channel_id,
            status=STATUS_PAUSED if paused else STATUS_UNHEALTHY,
            failures=failures,
            error=text,
            at=now,
            retry_at=None if paused else retry_at,
        )
        if paused:
            # what piled up while refused is stale by the time an admin fixes it: drop it
            await store.deliveries.drop_channel(delivery.channel_id, reason=text)
        else:
            await store.deliveries.hold_channel(delivery.channel_id, until=retry_at, error=text)
    log.warning("channel %d refused delivery %d: %s", delivery.channel_id, delivery.id, text)
    if delivery.subscription_id is None:
        return None
    return await store.subscriptions.get(delivery.subscription_id)


async def record_transient_failure(
    store: Store,
    delivery: Delivery,
    error: str,
    *,
    retry_after: float | None = None,
    now: datetime | None = None,
) -> bool:
    """A 429, 5xx or network failure: retry later (the server's delay when it gave one, else backoff), up to
    MAX_SEND_ATTEMPTS. Returns True when it will be retried, False when given up."""
    now = now or utcnow()
    attempts = max(delivery.attempts, 1)
    if attempts >= MAX_SEND_ATTEMPTS:
        await record_failed(store, delivery, f"gave up after {attempts} attempts: {error}", now=now)
        return False
    delay = (
        timedelta(seconds=retry_after) if retry_after is not None else _backoff(attempts, TRANSIENT_BACKOFF)
    )
    await store.deliveries.retry_later(delivery.id, at=now + delay, error=error)
    return True


async def record_failed(store: Store, delivery: Delivery, error: str, *, now: datetime | None = None) -> None:
    """Never retried (a 400, or too many transient failures); the reason shows on the subscription."""
    now = now or utcnow()
    async with store.transaction():
        await store.deliveries.mark_failed(delivery.id, error)
        if delivery.subscription_id is not None:
            await store.subscriptions.record_error(
                delivery.subscription_id, f"a story could not be posted: {error}", at=now
            )
    log.warning("delivery %d to channel %d failed: %s", delivery.id, delivery.channel_id, error)


async def record_edited(store: Store, delivery: Delivery, *, gave_up: bool = False) -> None:
    """The "Also on" edit is done, or cannot be done (message deleted, 400): then no more are asked for."""
    await store.deliveries.mark_edited(delivery.id, edits=MAX_ALSO_ON_EDITS if gave_up else None)
