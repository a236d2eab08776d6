"""The bot's shared core: services every feature uses (admission, ...); it imports no
feature."""
