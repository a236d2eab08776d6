"""A scope's label rules, options (thresholds, auto-retrain) and label renames.

Mixed into :class:`~bot.db.guild_data.ScopedData`: every query filters on the scope.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.records import LabelRule, RuleAction, ServerOptions
from bot.db.schema import GuildOptionsRow, LabelRuleRow, TaughtImageRow, utcnow
from bot.db.scope_base import ScopeBase

#: At most this many rules per server (one per label, plus ``unknown`` and ``*``).
MAX_RULES = 100


class ScopeRules(ScopeBase):
    # --- options --------------------------------------------------------------------------
    async def options(self) -> ServerOptions:
        async with self._session() as s:
            row = await s.get(GuildOptionsRow, self.scope_id)
            if row is None:
                return ServerOptions()
            return ServerOptions(
                row.low_confidence, row.auto_retrain_after, row.taught_since_retrain
            )

    async def _options_row(self, s: AsyncSession) -> GuildOptionsRow:
        await self._ensure_row(s)
        row = await s.get(GuildOptionsRow, self.scope_id)
        if row is None:
            row = GuildOptionsRow(
                guild_id=self.scope_id, auto_retrain_after=0, taught_since_retrain=0
            )
            s.add(row)
            await s.flush()
        return row

    async def set_low_confidence(self, value: float | None) -> None:
        """The server's "not sure" threshold in [0, 1]; ``None``: the global default."""
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"low_confidence {value} is not in [0, 1]")
        async with self._write() as s:
            (await self._options_row(s)).low_confidence = value

    async def set_auto_retrain(self, after: int) -> None:
        """Retrain after ``after`` new taught images (0: never automatically)."""
        if after < 0:
            raise ValueError(f"auto_retrain_after {after} is negative")
        async with self._write() as s:
            (await self._options_row(s)).auto_retrain_after = after

    async def _count_taught(self, s: AsyncSession) -> None:
        """One more taught image since the last retrain (in the teaching transaction)."""
        row = await self._options_row(s)
        row.taught_since_retrain = (row.taught_since_retrain or 0) + 1

    async def _reset_taught_count(self, s: AsyncSession) -> int:
        """Set the count to 0 (a retrain starts); what it was."""
        row = await s.get(GuildOptionsRow, self.scope_id)
        if row is None:
            return 0
        counted, row.taught_since_retrain = row.taught_since_retrain or 0, 0
        return counted

    async def _give_back_taught_count(self, s: AsyncSession, counted: int) -> None:
        """A retrain failed: the images it reset the count for are new again."""
        row = await self._options_row(s)
        row.taught_since_retrain = (row.taught_since_retrain or 0) + counted

    # --- rules ------------------------------------------------------------------------------
    def _rule(self, row: LabelRuleRow) -> LabelRule:
        return LabelRule(
            row.label,
            RuleAction(row.action),
            row.threshold,
            row.emoji,
            row.log_channel_id,
            row.created_by,
        )

    async def rules(self) -> list[LabelRule]:
        """This server's rules, by label."""
        async with self._session() as s:
            rows = await s.scalars(
                select(LabelRuleRow)
                .where(LabelRuleRow.guild_id == self.scope_id)
                .order_by(LabelRuleRow.label)
            )
            return [self._rule(r) for r in rows]

    async def set_rule(self, rule: LabelRule) -> bool:
        """Create or replace the rule of ``rule.label``; whether it replaced one.
        ``ValueError`` past :data:`MAX_RULES` (the cog checks it first with a message)."""
        async with self._write() as s:
            await self._ensure_row(s)
            row = await s.get(LabelRuleRow, (self.scope_id, rule.label))
            replaced = row is not None
            if row is None:
                n = await s.scalar(
                    select(func.count())
                    .select_from(LabelRuleRow)
                    .where(LabelRuleRow.guild_id == self.scope_id)
                )
                if int(n or 0) >= MAX_RULES:
                    raise ValueError(f"a server has at most {MAX_RULES} rules")
                row = LabelRuleRow(guild_id=self.scope_id, label=rule.label)
                s.add(row)
            row.action, row.threshold = rule.action.value, rule.threshold
            row.emoji, row.log_channel_id = rule.emoji, rule.log_channel_id
            row.created_by, row.created_at = rule.created_by, utcnow()
            return replaced

    async def remove_rule(self, label: str) -> bool:
        async with self._write() as s:
            result = await s.execute(
                delete(LabelRuleRow).where(
                    LabelRuleRow.guild_id == self.scope_id, LabelRuleRow.label == label
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # --- labels -------------------------------------------------------------------------------
    async def rename_label(self, old: str, new: str) -> int:
        """Move the taught images (and the rule) of ``old`` to ``new``; how many images.
        0 if ``old`` has none; ``ValueError`` if ``new`` already has taught images."""
        async with self._store.lock(self.scope_id), self._write() as s:
            mine = TaughtImageRow.guild_id == self.scope_id
            taken = await s.scalar(
                select(func.count())
                .select_from(TaughtImageRow)
                .where(mine, TaughtImageRow.label == new)
            )
            if taken:
                raise ValueError(f"label {new!r} already has taught images")
            result = await s.execute(
                update(TaughtImageRow).where(mine, TaughtImageRow.label == old).values(label=new)
            )
            moved = int(result.rowcount or 0)  # type: ignore[attr-defined]
            if moved:
                rule = await s.get(LabelRuleRow, (self.scope_id, old))
                clash = await s.get(LabelRuleRow, (self.scope_id, new))
                if rule is not None and clash is not None:  # the new label's rule stays
                    await s.delete(rule)
                elif rule is not None:
                    await s.execute(
                        update(LabelRuleRow)
                        .where(LabelRuleRow.guild_id == self.scope_id, LabelRuleRow.label == old)
                        .values(label=new)
                    )
            return moved
