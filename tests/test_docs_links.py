"""README.md and docs/*.md: every relative link and image points to a file of the repository,
and every ``#anchor`` to a heading of the file it names (GitHub's heading slugs)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: ``[text](target)`` and ``![alt](target)``, with an optional "title" after the target.
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: ``<img src="...">`` and ``<a href="...">`` written as HTML.
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced and indented code blocks (blank in their place)."""
    lines: list[str] = []
    fenced = indented = False
    previous_blank = True
    for line in text.splitlines():
        blank = not line.strip()
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            lines.append("")
        elif fenced:
            lines.append("")
        elif line.startswith(("    ", "\t")) and not blank and (previous_blank or indented):
            indented = True  # an indented code block: after a blank line, while indented
            lines.append("")
        else:
            indented = indented and blank
            lines.append(line)
        previous_blank = blank
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the text as rendered (links and formatting marks
    gone), lowercase, punctuation dropped except '-' and '_', spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes for ``path``'s headings (a repeated one gets -1, -2...)."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        found.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def links(path: Path) -> list[str]:
    targets = []
    for line in prose_lines(path.read_text()):
        line = INLINE_CODE.sub("", line)  # `[a](b)` in code is no link
        targets += MD_LINK.findall(line) + HTML_LINK.findall(line)
    return targets


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) is not None


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of ``page`` that name no file of ``root``, or no heading of it."""
    problems = []
    for target in links(page):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no file {dest.relative_to(root.resolve())}")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path):
    problems = broken_links(page)
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_pages_have_links_to_check():
    """The checks above see the links (a parser that found none would pass them all)."""
    readme = links(ROOT / "README.md")
    assert "docs/images/answer.png" in readme
    assert any(t.startswith("docs/") and t.endswith(".md") for t in readme)


def test_slugs_follow_githubs_rules(tmp_path: Path):
    assert slug("Admission: bursts and the one door") == "admission-bursts-and-the-one-door"
    assert slug("The classifier (`provider/`)") == "the-classifier-provider"
    assert slug("What a retrain reports") == "what-a-retrain-reports"
    assert slug('The "Not sure" threshold') == "the-not-sure-threshold"
    assert slug("Golem backend (BACKEND=golem)") == "golem-backend-backendgolem"
    assert slug("1. Install yagna and gftp") == "1-install-yagna-and-gftp"
    assert slug("snake_case and [a link](x.md)") == "snake_case-and-a-link"
    page = tmp_path / "page.md"
    page.write_text("# Tests\n\n```\n# not a heading\n```\n\n## Tests\n\n    # indented code\n")
    assert anchors(page) == {"tests", "tests-1"}


def test_broken_links_are_found(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A `code` heading\n")
    (tmp_path / "docs" / "picture.png").write_bytes(b"png")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Top\n\n[ok](#top) [ok](other.md#a-code-heading) ![ok](picture.png) "
        "[gone](missing.md) ![gone](nope.png) [bad](#nowhere) [bad](other.md#top) "
        '<img src="absent.png"> [web](https://example.com) `[code](not-a-link.md)` '
        "[out](../../elsewhere.md)\n\n    [indented code](not-a-link.md)\n"
    )
    problems = broken_links(page, tmp_path)
    assert sorted(p.split(":")[0] for p in problems) == sorted(
        ["missing.md", "nope.png", "#nowhere", "other.md#top", "absent.png", "../../elsewhere.md"]
    )
