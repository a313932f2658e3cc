"""Previous/Next buttons over a command's answer, shared by /news and /trending."""

from __future__ import annotations

import discord

PAGE_TIMEOUT = 600.0  # buttons live 10 minutes (an interaction token lives 15)


class OwnedPager(discord.ui.View):
    """Previous/Next that only the person who asked may press; disabled when they time out.
    Subclasses implement `turn`; the buttons' custom ids are `<command>:previous` and `<command>:next`."""

    def __init__(self, *, command: str, owner_id: int, timeout: float = PAGE_TIMEOUT) -> None:
        super().__init__(timeout=timeout)
        self.command = command
        self.owner_id = owner_id
        self.message_interaction: discord.Interaction | None = None  # the answer these buttons sit on
        self.previous.custom_id = f"{command}:previous"
        self.next.custom_id = f"{command}:next"

    async def turn(self, interaction: discord.Interaction, *, forward: bool) -> None:
        raise NotImplementedError

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(
            f"These buttons belong to whoever asked. Run `/{self.command}` yourself to browse.",
            ephemeral=True,
        )
        return False

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self.turn(interaction, forward=False)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.primary)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self.turn(interaction, forward=True)

    async def on_timeout(self) -> None:
        if self.message_interaction is None:
            return
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        try:
            await self.message_interaction.edit_original_response(view=self)
        except discord.HTTPException:
            pass  # the message was deleted or the token ran out: nothing to tidy
