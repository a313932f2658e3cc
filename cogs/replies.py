"""Answering an interaction the same way from every command: a reply, or a followup after a defer."""

from __future__ import annotations

from typing import Any

import discord


async def answer(interaction: discord.Interaction, **kwargs: Any) -> None:
    """Send `kwargs` (content, embeds, view, ephemeral…) as the answer, mentioning no one."""
    kwargs.setdefault("allowed_mentions", discord.AllowedMentions.none())
    if kwargs.get("view") is None:
        kwargs.pop("view", None)
    if interaction.response.is_done():
        kwargs.pop("ephemeral", None)  # a deferred answer keeps the visibility of the defer
        await interaction.followup.send(**kwargs)
    else:
        await interaction.response.send_message(**kwargs)
