"""demo/picture.py: the README's picture lays out the bot's real messages, escaped."""

from __future__ import annotations

from demo.picture import page
from tests.discord_sim import Message, User


def test_the_page_shows_the_answer_its_buttons_and_escapes_what_members_typed():
    bot = User(2, "Classifier", bot=True)
    answer = Message(
        10,
        channel_id=5,
        guild_id=6,
        author=bot,
        embeds=[
            {
                "title": "daisy (100%)",
                "color": 0x57F287,
                "fields": [{"name": "Scores", "value": "`██████████` 100% daisy"}],
                "footer": {"text": "model 25f4da126a0b"},
            }
        ],
        components=[
            {
                "type": 1,
                "components": [{"type": 2, "label": "Right"}, {"type": 2, "label": "Wrong..."}],
            }
        ],
    )
    html = page([("alice", "/classify image: <script>.jpg"), ("Classifier", answer)])
    assert "daisy (100%)" in html and "100% daisy" in html and "model 25f4da126a0b" in html
    assert html.index("Right") < html.index("Wrong...")
    assert "<script>.jpg" not in html and "&lt;script&gt;.jpg" in html
    assert "#57f287" in html  # the embed's colour bar
