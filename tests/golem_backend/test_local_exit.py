"""A process whose worker was killed mid-batch still exits promptly.

CPython < 3.11.4 (Debian 12 ships 3.11.2) leaves ProcessPoolExecutor's feeder thread
blocked in ``write()`` when a worker dies with a large batch still in the pipe, and the
interpreter then hangs at exit. The backend closes the pipe's read end to prevent it.
"""

import shutil
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from golem_backend.local.backend import LocalBackend
    from golem_backend.settings import BackendSettings

    async def main(data_dir, image_path):
        settings = BackendSettings(
            _env_file=None, data_dir=data_dir, local_workers=1, request_timeout_s=60
        )
        big = open(image_path, "rb").read()
        async with LocalBackend(settings) as backend:
            pid = backend.worker_pids[0]
            os.kill(pid, signal.SIGSTOP)  # the worker stops reading: the pipe fills up
            request = asyncio.create_task(backend.classify([big] * 8))
            for _ in range(200):
                if backend._pool.workers[0].state == "busy":
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
            outcome = await request
            print("request answered:", len(outcome), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    print("main done", flush=True)
    """
)


def test_process_exits_after_a_worker_is_killed_with_a_large_batch(tmp_path, tiny_model):
    import numpy as np
    from PIL import Image

    (tmp_path / "models").mkdir()
    shutil.copy(tiny_model.path, tmp_path / "models" / "current.model")
    rng = np.random.default_rng(0)
    image = tmp_path / "noise.png"  # ~3 MB: 8 of them are far more than a pipe buffer
    Image.fromarray(rng.integers(0, 255, (1000, 1000, 3), np.uint8)).save(image)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(image)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "request answered: 8" in proc.stdout, proc.stderr[-2000:]
    assert "main done" in proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
