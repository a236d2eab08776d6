"""A Discord bot that classifies images; its classifier runs behind a ``golem_backend.Backend``.

Run it with ``python -m bot`` or ``classifier-bot``; see docs/operating.md for setup and settings.
"""
