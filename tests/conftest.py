"""Fixtures shared by the test modules, one section per part of the system they stand up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.bot_harness import BotHarness, fake_discord_with_bot
from tests.support.discord_server import FakeDiscord

# --- Discord: FakeDiscord and the real bot against it (tests/support/bot_harness.py) ----------------------


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A FakeDiscord with no guild yet."""
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def bot_harness(tmp_path: Path) -> AsyncIterator[BotHarness]:
    """A ready KpopNewsBot against a FakeDiscord with the guild "K-pop Fans" (#general, #news), on a tmp db."""
    async with fake_discord_with_bot(tmp_path) as harness:
        yield harness
