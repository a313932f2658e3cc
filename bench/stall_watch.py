"""What blocks the event loop: a watchdog thread that notices when the loop has run nothing for a while and
records what the loop's thread was doing (its Python stack, sampled every few ms while it lasts), and the
garbage collector's passes (a full collection over many objects blocks the loop without a frame to blame).

    watch = StallWatch(threshold=0.05)
    async with watch.running():
        ...                       # the work measured
    print(watch.report())         # the worst stalls, where they were, and the collector's pauses

Sampling another thread's stack takes the GIL, so a stall spent in C code that holds it (a long regex, a big
pickle) is seen when it ends, at the frame that called it: the samples name the Python line, not the C function.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
# where an idle thread waits: not what holds the GIL
_IDLE = frozenset({"wait", "select", "poll", "_worker", "get", "acquire", "sleep", "_recv", "recv_bytes"})


@dataclass
class Stall:
    started: float
    seconds: float = 0.0
    samples: list[list[traceback.FrameSummary]] = field(default_factory=list)
    others: collections.Counter[str] = field(default_factory=collections.Counter)  # other busy threads' sites
    gc_seconds: float = 0.0  # collector time inside the stall
    # the loop thread's CPU time during the stall: about `seconds` when code ran on the loop; much less when
    # the thread waited (for the GIL another thread held, or for a CPU the machine's other work held)
    cpu_seconds: float = 0.0


class StallWatch:
    def __init__(self, threshold: float = 0.05, tick: float = 0.002) -> None:
        self.threshold = threshold
        self.tick = tick
        self.stalls: list[Stall] = []
        self.gc_pauses: list[tuple[int, float, float]] = []  # (generation, start, seconds)
        self._last = time.perf_counter()
        self._stop = threading.Event()
        self._gc_start: float | None = None
        self._loop_thread = threading.get_ident()
        self._open: dict[float, Stall] = {}  # stalls being sampled, by when the loop last ran
        self.census: collections.Counter[str] = collections.Counter()  # objects the collector tracks, by type
        self.full_collection = 0.0  # CPU seconds of one full collection at the end

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._loop_thread:
            return
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
        elif self._gc_start is not None:
            self.gc_pauses.append((info.get("generation", -1), self._gc_start, now - self._gc_start))
            self._gc_start = None

    async def _beat(self) -> None:
        self._last, cpu_before = time.perf_counter(), time.thread_time()
        while True:
            now, cpu = time.perf_counter(), time.thread_time()  # thread_time: the loop thread's own CPU
            gap = now - self._last
            if gap >= self.threshold:
                # the loop ran nothing (not even this) for `gap`: a stall, measured here
                stall = self._open.pop(self._last, None) or Stall(self._last)
                stall.seconds, stall.cpu_seconds = gap, cpu - cpu_before
                self.stalls.append(stall)
            self._last, cpu_before = now, cpu
            await asyncio.sleep(self.tick)

    def _watch(self) -> None:
        """Samples the stacks while the loop is quiet; the beat closes the stall and measures it."""
        while not self._stop.wait(self.tick):
            started = self._last
            if time.perf_counter() - started < self.threshold:
                continue
            stall = self._open.setdefault(started, Stall(started))
            frames = sys._current_frames()
            loop_frame = frames.get(self._loop_thread)
            if loop_frame is not None:
                stall.samples.append(traceback.extract_stack(loop_frame))
            for ident, frame in frames.items():  # what the other threads do meanwhile (the GIL is shared)
                if ident in (self._loop_thread, threading.get_ident()):
                    continue
                stack = traceback.extract_stack(frame)
                if stack and stack[-1].name not in _IDLE:
                    stall.others[self.site(stack)] += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StallWatch]:
        self._loop_thread = threading.get_ident()
        beat = asyncio.create_task(self._beat())
        thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)
        gc.callbacks.append(self._on_gc)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            gc.callbacks.remove(self._on_gc)
            # what a full collection walks now, and what it costs (the loop stands still meanwhile)
            objects = gc.get_objects()
            self.census = collections.Counter(type(o).__name__ for o in objects)
            del objects
            cpu = time.thread_time()
            gc.collect()
            self.full_collection = time.thread_time() - cpu
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            for stall in self.stalls:
                end = stall.started + stall.seconds
                stall.gc_seconds = sum(
                    max(0.0, min(end, s + d) - max(stall.started, s)) for _, s, d in self.gc_pauses
                )

    @staticmethod
    def site(sample: list[traceback.FrameSummary]) -> str:
        """Where a sample was: the innermost frame of this project, and the innermost frame of all."""
        ours = [f for f in sample if f.filename.startswith(ROOT) and "stall_watch" not in f.filename]
        inner = sample[-1]
        where = f"{Path(inner.filename).name}:{inner.lineno} {inner.name}"
        if ours:
            own = ours[-1]
            mine = f"{Path(own.filename).relative_to(ROOT)}:{own.lineno} {own.name}"
            return mine if own is inner else f"{mine} -> {where}"
        return where

    def report(self, worst: int = 8) -> str:
        lines = []
        stalls = sorted(self.stalls, key=lambda s: s.seconds, reverse=True)
        total = sum(s.seconds for s in stalls)
        busy = sorted(self.stalls, key=lambda s: s.cpu_seconds, reverse=True)
        lines.append(
            f"event-loop stalls >= {self.threshold * 1000:.0f} ms: {len(stalls)}, {total:.2f} s in all"
            + (f", worst {stalls[0].seconds * 1000:.0f} ms" if stalls else "")
            + " (a loop sampled in `select` was waiting for the GIL or the CPU, not running a callback)"
        )
        if busy:
            lines.append(
                f"  the loop thread's own CPU in a stall: worst {busy[0].cpu_seconds * 1000:.0f} ms"
                f" (that stall {busy[0].seconds * 1000:.0f} ms); stalls with >= {self.threshold * 1000:.0f} ms of"
                f" it: {sum(1 for s in busy if s.cpu_seconds >= self.threshold)}"
            )
        sites: collections.Counter[str] = collections.Counter()
        site_time: collections.Counter[str] = collections.Counter()
        for stall in stalls:
            if not stall.samples:
                continue
            for sample in stall.samples:
                sites[self.site(sample)] += 1
            main = collections.Counter(self.site(s) for s in stall.samples).most_common(1)[0][0]
            site_time[main] += stall.seconds
        for stall in stalls[:worst]:
            counted = collections.Counter(self.site(s) for s in stall.samples).most_common(2)
            where = "; ".join(f"{site} ({n} samples)" for site, n in counted) or "no sample"
            gc_part = f", GC {stall.gc_seconds * 1000:.0f} ms of it" if stall.gc_seconds else ""
            lines.append(
                f"  {stall.seconds * 1000:5.0f} ms (loop thread on CPU {stall.cpu_seconds * 1000:.0f} ms{gc_part}):"
                f" {where}"
            )
            if stall.others:
                elsewhere = "; ".join(f"{site} ({n})" for site, n in stall.others.most_common(2))
                lines.append(f"           meanwhile in other threads: {elsewhere}")
        if busy and busy[0].cpu_seconds >= self.threshold:
            lines.append("  the stalls with the most CPU on the loop thread (code running on the loop):")
            for stall in [s for s in busy if s.cpu_seconds >= self.threshold][:worst]:
                counted = collections.Counter(self.site(s) for s in stall.samples).most_common(2)
                where = "; ".join(f"{site} ({n} samples)" for site, n in counted) or "no sample"
                lines.append(
                    f"    {stall.cpu_seconds * 1000:5.0f} ms of {stall.seconds * 1000:.0f} ms: {where}"
                )
        if site_time:
            lines.append("  stall time by site (the site most sampled in each stall):")
            for site, seconds in site_time.most_common(10):
                lines.append(f"    {seconds * 1000:6.0f} ms  {site}")
        by_gen: dict[int, list[float]] = collections.defaultdict(list)
        for generation, _, seconds in self.gc_pauses:
            by_gen[generation].append(seconds)
        for generation, pauses in sorted(by_gen.items()):
            lines.append(
                f"  GC generation {generation}: {len(pauses)} passes, {sum(pauses):.2f} s,"
                f" longest {max(pauses) * 1000:.0f} ms"
            )
        if self.census:
            top = ", ".join(f"{name} {n:,}" for name, n in self.census.most_common(6))
            lines.append(
                f"  at the end: {sum(self.census.values()):,} objects tracked by the collector ({top});"
                f" a full collection took {self.full_collection * 1000:.0f} ms of CPU on the loop thread"
            )
        return "\n".join(lines)
