"""A Discord bot that classifies images; its classifier runs behind a ``golem_backend.Backend``.

Run it with ``python -m bot`` or ``classifier-bot``; see the README for setup and settings.
"""
