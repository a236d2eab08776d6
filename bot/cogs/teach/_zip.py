"""``/teach zip``: a zip attachment laid out as a folder per label, taught through the bulk
path (:func:`teach_archive`, its chunks through the door on the path ``teach_zip``); the
archive's limits come from the settings (``ARCHIVE_*``) and every entry gets a line in
the report."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.cogs.teach._archive import ArchiveRefused, size_text
from bot.cogs.teach._bulk import teach_archive
from bot.cogs.teach._bulk_replies import ProgressReply, report_reply
from bot.core.download import check_url, download_file
from bot.db import ScopedData

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot


async def teach_zip_attachment(
    bot: ClassifierBot,
    interaction: discord.Interaction,
    scope: ScopedData,
    archive: discord.Attachment,
) -> None:
    settings = bot.settings
    limit = settings.archive_max_bytes
    if archive.size > limit:
        raise ArchiveRefused(
            f"That archive is {size_text(archive.size)}; the limit is {size_text(limit)}."
        )
    check_url(archive.url, settings.attachment_hosts)
    await interaction.response.defer(ephemeral=True, thinking=True)
    data = await download_file(
        bot.http_session,
        archive.url,
        allowed_hosts=settings.attachment_hosts,
        max_bytes=limit,
        timeout_s=settings.download_timeout_s,
    )
    progress = ProgressReply(
        interaction, settings.progress_interval_s, f"Teaching `{archive.filename[:60]}`"
    )
    user = interaction.user
    report = await teach_archive(
        bot,
        scope,
        data,
        path="teach_zip",
        member_id=user.id,
        user_id=user.id,
        user_name=str(user),
        progress=progress,
    )
    content, files = report_reply(report, f"`{archive.filename[:60]}`:")
    await interaction.edit_original_response(content=content, attachments=files)
