"""The bot's process stays light: the classifier's heavy libraries run in the backend's
worker processes only. (Checking a model file's header at start once pulled scikit-learn
and SciPy into the bot: +68 MB of RSS.)"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "scipy", "onnxruntime", "h5py", "yapapi")


def test_importing_the_bot_and_every_cog_loads_no_heavy_library():
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import bot.core.client, bot.cogs\n"
        "for m in pkgutil.iter_modules(bot.cogs.__path__):\n"
        "    importlib.import_module(f'bot.cogs.{m.name}')\n"
        f"print(json.dumps(sorted(n for n in {HEAVY!r} if n in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == []
