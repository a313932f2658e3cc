"""Several processes, one database: claims with a lease, the shared request limit and the store's locks, on
both engines (`store_url`: a SQLite file, or a PostgreSQL database when one is reachable).

Two `Store` objects opened on one database stand for two processes: on PostgreSQL they are two connection
pools, as two processes would have."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from bot.models import Delivery, Story
from bot.rate_limit import LocalLimiter, SharedLimiter, request_trace
from bot.store import Store
from bot.timeutil import utcnow


@pytest.fixture
async def stores(store_url: str):
    """Two stores on one database, as two processes of the bot."""
    first = await Store.open(store_url)
    second = await Store.open(store_url)
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


async def add_sources(store: Store, count: int, *, due_in: float = -1.0, prefix: str = "feed") -> list[int]:
    ids = []
    for n in range(count):
        source = await store.sources.add(
            f"https://{prefix}{n}.example/rss", f"{prefix} {n}", owner_guild_id=None
        )
        source.next_poll_at = utcnow() + timedelta(seconds=due_in)
        await store.sources.save_state(source)
        assert source.id is not None
        ids.append(source.id)
    return ids


async def add_deliveries(store: Store, channels: dict[int, int]) -> list[Delivery]:
    """`channels`: channel id -> how many stories it has pending, queued oldest first channel by channel."""
    stored = await store.stories.add_many(
        [
            Story(key=f"https://k.example/{n}", title=f"Story {n}", url=f"https://k.example/{n}", source="K")
            for n in range(max(channels.values()))
        ],
        source_id=None,
    )
    now = utcnow()
    for channel_id, count in channels.items():
        for story in stored[:count]:
            await store.deliveries.add(
                Delivery(
                    story_id=story.id,
                    cluster_id=story.id,
                    guild_id=1,
                    channel_id=channel_id,
                    subscription_id=None,
                    nonce=f"n{channel_id}-{story.id}",
                    created_at=now,
                )
            )
    return await store.deliveries.list()


# --- sources ------------------------------------------------------------------------------------------------


async def test_two_processes_claiming_at_once_get_disjoint_sources(stores) -> None:
    first, second = stores
    ids = await add_sources(first, 30)
    now = utcnow()
    rounds = await asyncio.gather(
        *(store.sources.claim_due(store.owner, now, 60, 4) for _ in range(4) for store in (first, second))
    )
    claimed = [s.id for batch in rounds for s in batch]
    assert len(claimed) == len(set(claimed)) == 30  # each source once, none left over
    assert set(claimed) == set(ids)
    assert not await first.sources.claim_due(first.owner, now, 60, 10)  # every one is held
    holders = {s.id: s for s in await first.sources.list()}
    mine = {s.id for batch in rounds[0::2] for s in batch}
    assert mine and all(holders[i].next_poll_at is not None for i in mine)


async def test_a_source_not_due_or_held_is_not_claimed_and_an_expired_lease_is_taken_over(stores) -> None:
    first, second = stores
    [due] = await add_sources(first, 1)
    await add_sources(second, 1, due_in=3600, prefix="later")  # not due for an hour
    now = utcnow()
    [claimed] = await first.sources.claim_due(first.owner, now, 30, 10)
    assert claimed.id == due
    assert await second.sources.claim_due(second.owner, now + timedelta(seconds=29), 30, 10) == []
    # the first process died: its lease runs out and the other one takes the source over
    [taken] = await second.sources.claim_due(second.owner, now + timedelta(seconds=31), 30, 10)
    assert taken.id == due
    # the dead process cannot release what it no longer holds
    await first.sources.release(due, first.owner, now=now, fallback=now + timedelta(minutes=5))
    assert not await first.sources.claim(due, first.owner, now + timedelta(seconds=32), 30)


async def test_release_frees_the_source_and_never_leaves_it_due_at_once(stores) -> None:
    first, second = stores
    [source_id] = await add_sources(first, 1)
    now = utcnow()
    await first.sources.claim_due(first.owner, now, 30, 1)
    # the poll could not save its state: next_poll_at is still in the past, so release moves it on
    later = now + timedelta(minutes=5)
    await first.sources.release(source_id, first.owner, now=now, fallback=later)
    source = await first.sources.get(source_id)
    assert source is not None and source.next_poll_at == later.replace(microsecond=0)
    assert await second.sources.claim_due(second.owner, now, 30, 1) == []
    [claimed] = await second.sources.claim_due(second.owner, later + timedelta(seconds=1), 30, 1)
    assert claimed.id == source_id


async def test_renewed_claims_hold_and_next_due_says_when_another_claim_runs_out(stores) -> None:
    first, second = stores
    [held, waiting] = await add_sources(first, 2)
    later = await first.sources.get(waiting)
    assert later is not None
    later.next_poll_at = utcnow() + timedelta(seconds=100)
    await first.sources.save_state(later)
    now = utcnow()
    [claimed] = await first.sources.claim_due(first.owner, now, 10, 5)
    assert claimed.id == held
    assert await first.sources.renew_claims(first.owner, [held], until=now + timedelta(seconds=50)) == 1
    assert await second.sources.renew_claims(second.owner, [held], until=now + timedelta(seconds=90)) == 0
    assert await second.sources.claim_due(second.owner, now + timedelta(seconds=20), 10, 5) == []
    # the other process wakes when the claim runs out (50 s), before the next poll due (100 s)
    due = await second.sources.next_due_at(second.owner, now)
    assert due is not None and abs((due - (now + timedelta(seconds=50))).total_seconds()) < 1.5
    # its holder waits for the other source only
    due = await first.sources.next_due_at(first.owner, now)
    assert due is not None and abs((due - (now + timedelta(seconds=100))).total_seconds()) < 1.5
    assert await first.sources.release_all(first.owner) == 1


async def test_scheduling_a_new_source_keeps_what_another_process_set_first(stores) -> None:
    first, second = stores
    source = await first.sources.add("https://new.example/rss", "New", owner_guild_id=None)
    [unscheduled] = await second.sources.unscheduled()
    assert unscheduled.id == source.id
    now = utcnow()
    assert await first.sources.schedule([(source, now + timedelta(seconds=10))]) == 1
    assert await second.sources.schedule([(unscheduled, now + timedelta(seconds=200))]) == 0
    stored = await first.sources.get(source.id or 0)
    assert stored is not None and stored.next_poll_at == (now + timedelta(seconds=10)).replace(microsecond=0)
    assert await first.sources.unscheduled() == []
    assert [s.id for s in await first.sources.unscheduled(overdue_before=now + timedelta(seconds=11))] == [
        source.id
    ]


# --- deliveries ---------------------------------------------------------------------------------------------


async def test_deliveries_are_claimed_one_per_channel_oldest_first_and_never_twice(stores) -> None:
    first, second = stores
    queued = await add_deliveries(first, {11: 3, 12: 1, 13: 2, 14: 1})
    now = utcnow()
    a, b = await asyncio.gather(
        first.deliveries.claim_due(first.owner, now, 30, 10),
        second.deliveries.claim_due(second.owner, now, 30, 10),
    )
    claimed = a + b
    assert sorted(d.channel_id for d in claimed) == [11, 12, 13, 14]  # the head of each channel, once
    oldest = {}
    for delivery in queued:
        oldest.setdefault(delivery.channel_id, delivery.id)
    assert {d.id for d in claimed} == set(oldest.values())
    # the channel's next one waits until its head is sent, whoever sent it
    assert await second.deliveries.claim_due(second.owner, now, 30, 10) == []
    head = next(d for d in claimed if d.channel_id == 11)
    await first.deliveries.mark_sent(head.id, 555, at=now)
    [following] = await second.deliveries.claim_due(second.owner, now, 30, 10)
    assert following.channel_id == 11 and following.id == min(d.id for d in queued if d.channel_id == 11) + 1
    assert await first.deliveries.claim_due(first.owner, now, 30, 10, channel_id=11) == []


async def test_a_waiting_head_blocks_its_channel_and_an_expired_delivery_claim_is_taken_over(stores) -> None:
    first, second = stores
    queued = await add_deliveries(first, {21: 2, 22: 1})
    now = utcnow()
    head_21 = next(d for d in queued if d.channel_id == 21)
    await first.deliveries.retry_later(head_21.id, at=now + timedelta(seconds=60), error="503")
    [only] = await first.deliveries.claim_due(first.owner, now, 30, 10)
    assert only.channel_id == 22  # channel 21 keeps its order: its second post waits behind the first
    assert await second.deliveries.claim_due(second.owner, now + timedelta(seconds=29), 30, 10) == []
    due = await second.deliveries.next_due_at(second.owner)
    assert due is not None and due <= now + timedelta(seconds=31)  # wakes when the claim may have died
    [taken] = await second.deliveries.claim_due(second.owner, now + timedelta(seconds=31), 30, 10)
    assert taken.id == only.id and taken.nonce == only.nonce  # resent with the same nonce
    await second.deliveries.mark_sent(taken.id, 777, at=now)
    [retried] = await second.deliveries.claim_due(second.owner, now + timedelta(seconds=61), 30, 10)
    assert retried.id == head_21.id


async def test_released_and_renewed_delivery_claims(stores) -> None:
    first, second = stores
    await add_deliveries(first, {31: 1, 32: 1})
    now = utcnow()
    claimed = await first.deliveries.claim_due(first.owner, now, 10, 10)
    assert len(claimed) == 2
    ids = [d.id for d in claimed]
    assert await first.deliveries.renew_claims(first.owner, ids, until=now + timedelta(seconds=60)) == 2
    assert await second.deliveries.claim_due(second.owner, now + timedelta(seconds=30), 10, 10) == []
    assert await first.deliveries.release(first.owner, ids[:1]) == 1
    [freed] = await second.deliveries.claim_due(second.owner, now, 10, 10)
    assert freed.id == ids[0]
    assert await first.deliveries.release(first.owner) == 1


async def test_also_on_edits_are_claimed_once(stores) -> None:
    first, second = stores
    queued = await add_deliveries(first, {41: 1, 42: 1})
    now = utcnow()
    for delivery in queued:
        await first.deliveries.mark_sent(delivery.id, 900 + delivery.id, at=now)
        await first.deliveries.set_also_on_many([(delivery.id, ["Soompi"], True)])
    a, b = await asyncio.gather(
        first.deliveries.claim_edits(first.owner, now, 30, 10),
        second.deliveries.claim_edits(second.owner, now, 30, 10),
    )
    assert sorted(d.id for d in a + b) == sorted(d.id for d in queued)
    await first.deliveries.mark_edited(queued[0].id)
    assert await second.deliveries.claim_edits(second.owner, now + timedelta(seconds=31), 30, 10) == [
        d for d in await second.deliveries.list() if d.id == queued[1].id
    ]


# --- the shared request rate -------------------------------------------------------------------------------


async def test_slots_are_one_interval_apart_whoever_reserves_them(stores) -> None:
    first, second = stores
    asked = time.time()
    slots = sorted(
        await asyncio.gather(*(store.rates.reserve("test", 0.2) for _ in range(5) for store in stores))
    )
    assert (
        abs(slots[0] - asked) < 0.5
    )  # the limiter was idle: the first slot is now (on the database's clock)
    assert all(abs(b - a - 0.2) < 1e-3 for a, b in zip(slots, slots[1:], strict=False)), slots
    assert abs(await second.rates.reserve("another scope", 0.2) - time.time()) < 0.5


async def test_the_shared_limiter_keeps_every_process_together_under_the_rate(stores) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 2.0
    sent: list[float] = []

    async def sender(limiter: SharedLimiter) -> None:
        while loop.time() < end:
            await limiter.acquire()
            sent.append(loop.time())

    limiters = [SharedLimiter(store, rate=20.0, scope="test-rate") for store in stores]
    await asyncio.gather(*(sender(limiter) for limiter in limiters for _ in range(4)))
    sent.sort()
    busiest = max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent)
    assert busiest <= 22  # 20 per second, a slot's lateness and a second's edge: never a burst
    assert 36 <= len(sent) <= 50  # and not slower than asked either (2 s at 20/s, plus the last waiters)


async def test_a_task_waking_too_late_for_its_slot_takes_another(stores) -> None:
    limiter = LocalLimiter(rate=10.0)
    loop = asyncio.get_running_loop()
    late = asyncio.create_task(limiter.acquire())  # its slot is now; the loop is busy past it
    began = loop.time()
    while loop.time() - began < 0.25:  # noqa: ASYNC110 - blocking the loop on purpose
        pass
    await late
    assert limiter.late == 0  # the first slot is taken at once: the loop was free when it was reserved
    await limiter.acquire()
    second = asyncio.create_task(limiter.acquire())  # waits ~0.1 s for its slot
    await asyncio.sleep(0)
    began = loop.time()
    while loop.time() - began < 0.35:  # noqa: ASYNC110 - a stall past the slot and the one after it
        pass
    await second
    assert limiter.late == 1  # given up, and another slot waited for


class CountingLocal(LocalLimiter):
    acquired = 0

    async def acquire(self) -> None:
        self.acquired += 1
        await super().acquire()


class CountingLimiter(SharedLimiter):
    acquired = 0

    async def acquire(self) -> None:
        self.acquired += 1
        await super().acquire()


async def test_every_request_with_the_token_goes_in_a_slot_of_its_own_and_in_time(stores) -> None:
    limiter = CountingLimiter(stores[0], rate=10.0, scope="hook")
    [hook] = request_trace(lambda: limiter).on_request_start
    with_token = SimpleNamespace(headers={"Authorization": "Bot abc"})

    async def request(params: SimpleNamespace = with_token) -> None:
        await hook(None, None, params)

    await request()  # nothing acquired for it: the hook waits for a slot
    assert limiter.acquired == 1
    await limiter.acquire()  # a sender acquired: its request goes in that slot
    await request()
    assert limiter.acquired == 2
    await request(SimpleNamespace(headers={}))  # an interaction answer (no token): never limited
    assert limiter.acquired == 2
    await limiter.acquire()
    await asyncio.sleep(0.35)  # held back past its slot (a busy process): a new slot, not a late bunch
    await request()
    assert limiter.acquired == 4 and limiter.late == 0
    local = CountingLocal(rate=10.0)  # one process: the same rules, the slots in memory
    [local_hook] = request_trace(lambda: local).on_request_start
    await local.acquire()
    await local_hook(None, None, with_token)
    assert local.acquired == 1
    await local.acquire()
    await asyncio.sleep(0.35)
    await local_hook(None, None, with_token)
    assert local.acquired == 3 and local.late == 0


# --- locks --------------------------------------------------------------------------------------------------


async def test_try_lock_is_held_by_one_at_a_time(stores, engine: str) -> None:
    first, second = stores
    async with first.locks.try_lock("command-sync") as held:
        assert held
        async with first.locks.try_lock("command-sync") as again:
            assert not again  # another task of the same process
        if engine == "postgresql":  # SQLite serves one process: its lock lives in the process
            async with second.locks.try_lock("command-sync") as other:
                assert not other
        async with first.locks.try_lock("another lock") as unrelated:
            assert unrelated
    async with second.locks.try_lock("command-sync") as later:
        assert later


async def test_serialized_transactions_run_one_at_a_time(stores, engine: str) -> None:
    # SQLite serves one process, whose one write connection serialises its transactions: one store there
    first, second = stores if engine == "postgresql" else (stores[0], stores[0])
    order: list[str] = []

    async def clustering(store: Store, name: str, hold: float) -> None:
        async with store.transaction():
            await store.locks.serialize("clustering")
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    await asyncio.gather(clustering(first, "a", 0.3), clustering(second, "b", 0.0))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    with pytest.raises(RuntimeError):
        await first.locks.serialize("clustering")  # outside a transaction it would hold nothing
