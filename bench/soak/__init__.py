"""Pieces of the soak benchmark (``bench/bench_soak.py``): the files it sends, the
traffic it drives, and the probes that watch the bot's processes and directories."""
