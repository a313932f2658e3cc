"""Several bot processes on one PostgreSQL: two processes storing two outlets' copies of the same events at the
same moment still make one cluster per event (clustering runs under a store lock: one process at a time sees
the other's stories). Real processes, each with its own connection, started together."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from bot.store import Store
from tests.support.sql import rows

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 12

CHILD = r"""
import asyncio, json, sys, time
from datetime import UTC, datetime, timedelta

from bot.config import DeliveryConfig
from bot.models import ArtistRef, Story
from bot.pipeline import after_store
from bot.store import Store

url, outlet, start, events = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
ACTS = [("bts-v", "V", "BTS"), ("iu", "IU", None), ("jennie", "Jennie", "BLACKPINK"), ("karina", "Karina", "aespa")]
EVENTS = [
    ("begins military service today as an active duty soldier", "enlists for military service today at a training camp"),
    ("tops the Billboard Hot 100 chart with a new single", "debuts at number one on the Billboard Hot 100 chart"),
    ("is named global ambassador for a French luxury house", "becomes the new global ambassador of a French label"),
]


async def main():
    store = await Store.open(url)
    now = datetime.now(UTC).replace(microsecond=0)
    stories = []
    for n in range(events):
        act_id, name, group = ACTS[n % len(ACTS)]
        event = EVENTS[(n // len(ACTS)) % len(EVENTS)][0 if outlet == "Koreaboo" else 1]
        stories.append(Story(
            key=f"https://{outlet.lower()}.example/?p={n}",
            title=f"{name} {event}",
            url=f"https://{outlet.lower()}.example/news/{n}/",
            canonical_url=f"https://{outlet.lower()}.example/news/{n}/",
            source=outlet,
            summary=f"{name} {event}, the agency confirmed.",
            published=now - timedelta(hours=n * 60),  # each event far from the others: clusters are per event
            artists=[ArtistRef(act_id, name, group)],
        ))
    await store.stories.add_many(stories, source_id=None)
    stored = [s for s in stories if s.id is not None]
    while time.time() < start:  # both processes cluster at the same moment
        await asyncio.sleep(0.001)
    for story in stored:  # one story at a time, as feeds answer: the most chances to meet the other process
        await after_store(store, [story], config=DeliveryConfig(), deliver=False)
    await store.close()


asyncio.run(main())
"""


async def test_two_processes_clustering_copies_of_the_same_events_at_once_make_one_cluster_each(postgres_url):
    store = await Store.open(postgres_url)  # migrated once, before the processes start
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.time() + 3.0
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            postgres_url,
            outlet,
            str(start),
            str(EVENTS),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for outlet in ("Koreaboo", "Soompi")
    ]
    async with asyncio.timeout(90):
        outputs = [await child.communicate() for child in children]
    assert all(child.returncode == 0 for child in children), [err.decode() for _, err in outputs]
    # what the database says (a process's own view of an earlier story's cluster is stale after a merge)
    clusters = dict(await rows(store, "SELECT url, cluster_id FROM stories"))
    assert len(clusters) == 2 * EVENTS and None not in clusters.values()
    by_cluster: dict[int, list[int]] = defaultdict(list)
    for url, cluster_id in clusters.items():
        by_cluster[cluster_id].append(int(url.rstrip("/").rsplit("/", 1)[1]))
    # one cluster per event, holding both outlets' copies
    assert sorted(sorted(events) for events in by_cluster.values()) == [[n, n] for n in range(EVENTS)]
    await store.close()
