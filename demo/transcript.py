"""The demo's transcript: who said what, and the bot's answers as a member sees them
(label and confidence, the text, the buttons), as plain text lines."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.discord_sim import Message

#: what one scene showed: (who, the command they used) or (the bot's name, its message)
Event = tuple[str, "str | Message"]

UNKNOWN_TEXT = "doesn't look like anything I was trained on"
_TITLE = re.compile(r"^(?:Not sure: closest is )?(?P<label>.+) \((?P<confidence>[^)]*%)\)$")


def answer_label(embed: dict[str, Any]) -> str | None:
    """``daisy 99.9%``, ``unknown (closest: snowdrop 40%)``, or ``None`` for an embed that
    is not an answer about an image."""
    match = _TITLE.match(embed.get("title", ""))
    if match is None or "footer" not in embed:
        return None
    label, confidence = match["label"], match["confidence"]
    if UNKNOWN_TEXT in embed.get("description", ""):
        return f"unknown (closest: {label} {confidence})"
    if embed["title"].startswith("Not sure"):
        return f"{label}? {confidence} (low confidence)"
    return f"{label} {confidence}"


def buttons(message: Message) -> list[str]:
    """The labels of the message's buttons and the placeholders of its selects."""
    out = []
    for row in message.components:
        for item in row.get("components", []):
            text = item.get("label") or item.get("placeholder") or item.get("custom_id", "?")
            out.append(f"[{text}]")
    return out


def strip_markdown(text: str) -> str:
    return text.replace("**", "").replace("`", "")


#: Fields of an embed shown in the transcript; the model's id and the list of every label
#: are left out (long, and the answers already name the labels).
MAX_FIELDS = 8


def _long_field(name: str) -> bool:
    return name == "Model" or name.startswith("Labels (")


@dataclass
class Transcript:
    lines: list[str] = field(default_factory=list)
    echo: bool = True  # print each line as it comes
    #: each scene's title and what happened in it, for ``demo/picture.py``
    scenes: list[tuple[str, list[Event]]] = field(default_factory=list)

    def add(self, line: str = "") -> None:
        self.lines.append(line)
        if self.echo:
            print(line, flush=True)

    def scene(self, title: str) -> None:
        self.scenes.append((title, []))
        self.add()
        self.add(f"== {title} " + "=" * max(0, 72 - len(title)))

    def said(self, who: str, what: str) -> None:
        if self.scenes:
            self.scenes[-1][1].append((who, what))
        self.add(f"{who} > {what}")

    def note(self, text: str) -> None:
        self.add(f"   ({text})")

    def bot(self, name: str, message: Message) -> None:
        """The bot's message: its text, each embed (an answer's label first), buttons."""
        if self.scenes:
            self.scenes[-1][1].append((name, message))
        private = " (only they see it)" if message.ephemeral else ""
        first = f"{name}{private} >"
        text = strip_markdown(message.content).strip()
        lines = text.splitlines() if text else []
        for embed in message.embeds:
            label = answer_label(embed)
            if label is not None:
                lines.append(f"answer: {label}")
            elif embed.get("title"):
                lines.append(strip_markdown(embed["title"]))
            description = strip_markdown(embed.get("description", "")).strip()
            if description:
                lines.extend(f"  {d}" for d in description.splitlines()[:3])
            shown_fields = [f for f in embed.get("fields", []) if not _long_field(f["name"])]
            for f in shown_fields[:MAX_FIELDS]:
                value = " / ".join(v.strip() for v in strip_markdown(f["value"]).splitlines())
                lines.append(f"  {f['name']}: {value}")
        shown = buttons(message)
        if shown:
            lines.append("buttons: " + " ".join(shown))
        for attachment in message.attachments:
            lines.append(f"attached: {attachment.filename}")
        self.add(f"{first} {lines[0] if lines else ''}")
        for line in lines[1:]:
            self.add(" " * (len(first) + 1) + line)
