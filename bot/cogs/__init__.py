"""The bot's extensions: ``classify`` (everyone), ``autoclassify`` and ``admin``."""
