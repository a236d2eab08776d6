"""The bot's shared core: the client, settings, errors, admission, Discord limits, embeds,
downloads, the ops endpoints and logging. Every feature uses it; it imports no feature
(``docs/architecture.md``)."""
