"""A picture of the demo's first scene for the README: the bot's real messages, drawn in
Discord's style by the real Chromium (the simulator keeps every message the bot sent: its
text, embeds, buttons and uploaded files; this page only lays them out).

    python -m demo.run --picture docs/images/answer.png

Needs the browser the tests use (``.ci/chromium.sh`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from tests.discord_sim import Message

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_STYLE = """
body { margin: 0; background: #313338; color: #dbdee1; width: 620px;
  font: 15px/1.375 "gg sans", "Noto Sans", "Helvetica Neue", Arial, sans-serif; }
.chat { padding: 12px 16px 16px; }
.msg { display: flex; gap: 14px; margin-top: 14px; }
.avatar { width: 40px; height: 40px; border-radius: 50%; flex: none; color: #fff;
  display: flex; align-items: center; justify-content: center; font-weight: 700; }
.name { font-weight: 600; color: #f2f3f5; } .bot { background: #5865f2; color: #fff;
  font-size: 10px; border-radius: 3px; padding: 1px 4px; margin-left: 4px; }
.cmd { color: #949ba4; font-size: 14px; } .cmd b { color: #00a8fc; font-weight: 500; }
.embed { display: flex; gap: 12px; background: #2b2d31; border-left: 4px solid;
  border-radius: 4px; padding: 8px 16px 12px 12px; margin-top: 4px; max-width: 470px; }
.title { font-weight: 600; color: #f2f3f5; } .desc { font-size: 14px; margin-top: 4px; }
.field { font-size: 14px; margin-top: 6px; white-space: pre-wrap; font-family: monospace; }
.field-name { font-weight: 600; font-family: inherit; color: #f2f3f5; }
.footer { font-size: 12px; color: #949ba4; margin-top: 8px; }
.thumb { width: 80px; height: 80px; object-fit: cover; border-radius: 4px; flex: none; }
.buttons { display: flex; gap: 8px; margin-top: 8px; }
.button { background: #4e5058; color: #fff; border-radius: 3px; padding: 2px 16px;
  font-size: 14px; line-height: 30px; }
"""
_COLOURS = {"alice": "#eb459e", "bob": "#57f287", "carol": "#fee75c"}


def _markdown(text: str) -> str:
    out = html.escape(text)
    out = _BOLD.sub(r"<b>\1</b>", out)
    return _CODE.sub(r"<code>\1</code>", out).replace("\n", "<br>")


def _embed(embed: dict[str, Any], files: dict[str, bytes]) -> str:
    colour = f"#{int(embed.get('color') or 0x5865F2):06x}"
    parts = [f'<div class="title">{_markdown(embed.get("title", ""))}</div>']
    if embed.get("description"):
        parts.append(f'<div class="desc">{_markdown(embed["description"])}</div>')
    for f in embed.get("fields", []):
        parts.append(
            f'<div class="field"><span class="field-name">{_markdown(f["name"])}</span>\n'
            f"{html.escape(f['value'].replace('`', ''))}</div>"
        )
    if embed.get("footer", {}).get("text"):
        parts.append(f'<div class="footer">{html.escape(embed["footer"]["text"])}</div>')
    thumb = ""
    url = embed.get("thumbnail", {}).get("url", "")
    name = url.removeprefix("attachment://")
    if name in files:
        data = base64.b64encode(files[name]).decode()
        thumb = f'<img class="thumb" alt="" src="data:image/jpeg;base64,{data}">'
    elif url.startswith("http://localhost:"):  # the member's photo, on the simulator's CDN
        thumb = f'<img class="thumb" alt="" src="{html.escape(url)}">'
    return (
        f'<div class="embed" style="border-color:{colour}"><div>{"".join(parts)}</div>{thumb}</div>'
    )


def _bot_message(name: str, message: Message) -> str:
    files = {a.filename: a.data for a in message.attachments if a.data is not None}
    body = "".join(_embed(e, files) for e in message.embeds)
    if message.content:
        body = f"<div>{_markdown(message.content)}</div>" + body
    buttons = [
        item.get("label", "")
        for row in message.components
        for item in row.get("components", [])
        if item.get("label")
    ]
    if buttons:
        body += '<div class="buttons">' + "".join(
            f'<span class="button">{html.escape(b)}</span>' for b in buttons
        )
        body += "</div>"
    return (
        '<div class="msg"><div class="avatar" style="background:#5865f2">C</div><div>'
        f'<span class="name">{html.escape(name)}</span><span class="bot">APP</span>'
        f"{body}</div></div>"
    )


def page(events: list[tuple[str, str | Message]]) -> str:
    """The HTML of a scene: ``(who, "/classify image: x.jpg")`` or ``(bot name, Message)``."""
    rows = []
    for who, what in events:
        if isinstance(what, Message):
            rows.append(_bot_message(who, what))
        else:
            colour = _COLOURS.get(who, "#80848e")
            rows.append(
                f'<div class="msg"><div class="avatar" style="background:{colour}">'
                f"{html.escape(who[:1].upper())}</div><div>"
                f'<span class="name">{html.escape(who)}</span>'
                f'<div class="cmd">used <b>{html.escape(what)}</b></div></div></div>'
            )
    return (
        f'<!doctype html><meta charset="utf-8"><style>{_STYLE}</style>'
        f'<div class="chat">{"".join(rows)}</div>'
    )


async def screenshot(events: list[tuple[str, str | Message]], out: Path) -> None:
    """Render the scene in headless Chromium and write the PNG to ``out``."""
    import shutil

    from playwright.async_api import async_playwright

    from tests.browser import CHROMIUM_FLAGS

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    out.parent.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            tab = await browser.new_page(viewport={"width": 620, "height": 200})
            await tab.set_content(page(events), wait_until="networkidle")
            await tab.locator(".chat").screenshot(path=str(out))
        finally:
            await browser.close()
