"""The bot's features, one package each, loaded by name (``bot.core.client.EXTENSIONS``).

A feature uses another only through that feature's package (never its private
``_modules``), and only a lower one: teach < feedback < classify < auto_replies,
teach < rules < auto_replies, teach < labels, teach < data; admin uses none. See
``docs/architecture.md``.
"""
