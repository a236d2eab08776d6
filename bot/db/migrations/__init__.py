"""Alembic migration scripts of the bot's database (run by ``bot.db.engine.upgrade``)."""
