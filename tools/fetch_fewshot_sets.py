"""Rebuild the few-shot benchmark's photo sets (bench/bench_fewshot.py) from their sources.

    git clone https://github.com/congduytran12/Trash-Classification- trash
    git clone https://github.com/alexeygrigorev/clothing-dataset-small clothing
    python tools/fetch_fewshot_sets.py --trashnet trash --clothing clothing --out ../data/fewshot

Each source is a git repository at a recorded commit (a clone, or a bare git directory);
the script checks the commit, copies the photos out of it with ``git archive`` into
``OUT/<set>/<label>/`` and writes ``OUT/MANIFEST.json`` (source, licence, commit, and the
sha256 of every file), so two engineers who ran it hold the same bytes. Nothing here is
shipped with the product or used by its tests; the sets stay outside the repository.

* **trashnet**: TrashNet (Gary Thung and Mindy Yang, Stanford CS 229, 2016), photos of
  waste taken by its authors, 6 labels (cardboard, glass, metal, paper, plastic, trash),
  2527 photos of 512 x 384. Licence: MIT (github.com/garythung/trashnet, LICENSE). The
  original repository holds the photos in a zip above the size GitHub snapshots keep; the
  copy used is the same ``dataset-resized`` folder, unzipped, in
  github.com/congduytran12/Trash-Classification- (commit below).
* **clothing**: the clothing dataset, top-10 subset (Alexey Grigorev and contributors,
  2020), 10 labels (dress, hat, longsleeve, outwear, pants, shirt, shoes, shorts, skirt,
  t-shirt), 3781 photos; train, validation and test folders merged. Licence: CC0 1.0
  (github.com/alexeygrigorev/clothing-dataset-small, LICENSE).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

SOURCES = {
    "trashnet": {
        "repository": "https://github.com/congduytran12/Trash-Classification-",
        "original": "https://github.com/garythung/trashnet",
        "commit": "2ee76a0cd254d7eb13deba859aac99fc7a5a6018",
        "licence": "MIT (TrashNet, Gary Thung and Mindy Yang)",
        "folders": ["dataset-resized"],
    },
    "clothing": {
        "repository": "https://github.com/alexeygrigorev/clothing-dataset-small",
        "original": "https://github.com/alexeygrigorev/clothing-dataset",
        "commit": "11961516512414bf9f6c150a832cfd21b54a6b54",
        "licence": "CC0 1.0 (clothing dataset, Alexey Grigorev and contributors)",
        "folders": ["train", "validation", "test"],
    },
}
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(_git_dir(repo)), *args], check=True, capture_output=True
    ).stdout


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def _has_commit(repo: Path, commit: str) -> bool:
    try:
        _git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
    except subprocess.CalledProcessError:
        return False
    return True


def extract(name: str, repo: Path, out: Path) -> list[dict[str, str]]:
    """Copy one set's photos out of ``repo`` at its recorded commit into ``out/name``."""
    source = SOURCES[name]
    commit = source["commit"]
    if not _has_commit(repo, commit):
        raise SystemExit(f"{repo} does not hold commit {commit} of {source['repository']}")
    archive = _git(repo, "archive", "--format=tar", commit, *source["folders"])
    target = out / name
    shutil.rmtree(target, ignore_errors=True)
    files: list[dict[str, str]] = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            if not member.isfile() or path.suffix.lower() not in PHOTO_SUFFIXES:
                continue
            label = path.parent.name
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            dest = target / label / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            files.append(
                {"file": f"{label}/{path.name}", "sha256": hashlib.sha256(data).hexdigest()}
            )
    return sorted(files, key=lambda f: f["file"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in SOURCES:
        parser.add_argument(f"--{name}", type=Path, required=True, help="clone or git directory")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, source in SOURCES.items():
        files = extract(name, getattr(args, name), args.out)
        manifest[name] = {**source, "files": files}
        labels = sorted({f["file"].split("/")[0] for f in files})
        print(f"{name}: {len(files)} photos, {len(labels)} labels -> {args.out / name}")
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
