"""The bot's shared core: pieces every feature may use and that import no feature."""
