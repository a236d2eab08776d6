"""Rebuild the few-shot benchmark's photo sets (bench/bench_fewshot.py) from their sources.

    git clone https://github.com/congduytran12/Trash-Classification- trash
    git clone https://github.com/alexeygrigorev/clothing-dataset-small clothing
    git clone https://github.com/marcusklasson/GroceryStoreDataset grocery
    python tools/fetch_fewshot_sets.py --trashnet trash --clothing clothing --grocery grocery \
        --out ../data/fewshot

Each source is a git repository at a recorded commit (a clone, or a bare git directory);
the script checks the commit, copies the photos out of it with ``git archive`` into
``OUT/<set>/<label>/`` and writes ``OUT/MANIFEST.json`` (source, licence, commit, and the
sha256 of every file), so two engineers who ran it hold the same bytes. Nothing here is
shipped with the product or used by its tests; the sets stay outside the repository.
Sources may be given one at a time: the manifest keeps the sets already there.

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
* **grocery**: the Grocery Store Dataset (Marcus Klasson, Cheng Zhang, Hedvig Kjellström,
  WACV 2019), photos its authors took with a smartphone in grocery stores; 10 of its 42
  coarse labels, chosen to be distinct everyday subjects (apple, banana, carrots, kiwi,
  melon, milk, pepper, pineapple, potato, tomato; fine-grained kinds such as Granny Smith
  or Arla milk merged into their coarse label), 2239 photos, train, validation and test
  folders merged (``<split>-<file>``). Licence: MIT (github.com/marcusklasson/
  GroceryStoreDataset, LICENSE). Not ImageNet photos: taken for the dataset.
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
from typing import Any

SOURCES: dict[str, dict[str, Any]] = {
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
    "grocery": {
        "repository": "https://github.com/marcusklasson/GroceryStoreDataset",
        "original": "https://github.com/marcusklasson/GroceryStoreDataset",
        "commit": "fc80ba90f803d79d0383df52c5a4ac5de99ff6fc",
        "licence": "MIT (Grocery Store Dataset, Marcus Klasson and co-authors)",
        "folders": ["dataset/train", "dataset/val", "dataset/test"],
        # dataset/<split>/<kind>/<coarse label>/[<fine label>/]<file>: coarse label kept
        "label_depth": 3,
        "labels": {
            "Apple": "apple",
            "Banana": "banana",
            "Carrots": "carrots",
            "Kiwi": "kiwi",
            "Melon": "melon",
            "Milk": "milk",
            "Pepper": "pepper",
            "Pineapple": "pineapple",
            "Potato": "potato",
            "Tomato": "tomato",
        },
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


def label_and_name(source: dict[str, Any], path: Path) -> tuple[str, str] | None:
    """(label, file name in the label's folder) of a photo at ``path`` in the archive, or
    None when the set leaves it out."""
    depth = source.get("label_depth")
    if depth is None:  # <folder>/<label>/<file>
        return path.parent.name, path.name
    parts = path.parts
    label = source["labels"].get(parts[depth]) if len(parts) > depth + 1 else None
    if label is None:
        return None
    split = parts[1]  # files of different splits may share a name
    return label, f"{split}-{path.name}"


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
            placed = label_and_name(source, path)
            if placed is None:
                continue
            label, filename = placed
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            dest = target / label / filename
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            files.append(
                {"file": f"{label}/{filename}", "sha256": hashlib.sha256(data).hexdigest()}
            )
    return sorted(files, key=lambda f: f["file"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in SOURCES:
        parser.add_argument(f"--{name}", type=Path, help="clone or git directory")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    given = [name for name in SOURCES if getattr(args, name) is not None]
    if not given:
        parser.error(f"give at least one of: {', '.join('--' + n for n in SOURCES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for name in given:
        source = SOURCES[name]
        files = extract(name, getattr(args, name), args.out)
        manifest[name] = {**source, "files": files}
        labels = sorted({f["file"].split("/")[0] for f in files})
        print(f"{name}: {len(files)} photos, {len(labels)} labels -> {args.out / name}")
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
