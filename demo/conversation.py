"""The demo's conversation, played against the real bot through the Discord simulator.

Two servers: in "Garden Club" a member classifies two flower photos and a cup of coffee
(answered ``unknown``), says the coffee answer is wrong ("coffee", through the label
picker's "Something else..." form), and an administrator approves that correction with
/review. In "Cat Cafe" an administrator teaches the server its own label ``cat`` with
/teach, retrains with /retrain, and the server's new model answers the cat photo.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from demo.transcript import Transcript
from tests.discord_sim import (
    ADMINISTRATOR,
    Application,
    Channel,
    DiscordSimulator,
    Interaction,
    Message,
    User,
)

ROOT = Path(__file__).resolve().parent.parent
FLOWERS = ROOT / "provider" / "data" / "flowers17"
PHOTOS = Path(__file__).resolve().parent / "photos"
BOT = "Classifier"
RETRAIN_TIMEOUT_S = 240.0


@dataclass
class Cast:
    """The servers, channels and people of the demo."""

    garden: Channel
    cafe: Channel
    alice: User  # a member of both servers
    bob: User  # administrator of Garden Club
    carol: User  # administrator of Cat Cafe


def build_world(sim: DiscordSimulator, app: Application) -> Cast:
    bob, carol, alice = (sim.create_user(n) for n in ("bob", "carol", "alice"))
    garden_club = sim.create_guild("Garden Club", bob)
    cat_cafe = sim.create_guild("Cat Cafe", carol)
    for guild, admin in ((garden_club, bob), (cat_cafe, carol)):
        sim.add_member(guild, admin, ADMINISTRATOR)
        sim.add_member(guild, alice)
        guild.members.setdefault(app.user.id, [])
    return Cast(
        garden=sim.create_channel(garden_club, "general"),
        cafe=sim.create_channel(cat_cafe, "general"),
        alice=alice,
        bob=bob,
        carol=carol,
    )


def flower(label: str, index: int) -> tuple[str, bytes]:
    path = sorted((FLOWERS / label).glob("*.jpg"))[index]
    return f"{label}.jpg", path.read_bytes()


def photo(name: str) -> tuple[str, bytes]:
    return name, (PHOTOS / name).read_bytes()


def crops(name: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` different crops (and mirror images) of one photo, as JPEG files."""
    image = Image.open(PHOTOS / name).convert("RGB")
    width, height = image.size
    boxes = [
        (0, 0, int(width * 0.8), int(height * 0.8)),
        (int(width * 0.2), 0, width, int(height * 0.8)),
        (0, int(height * 0.2), int(width * 0.8), height),
        (int(width * 0.2), int(height * 0.2), width, height),
        (int(width * 0.1), int(height * 0.1), int(width * 0.9), int(height * 0.9)),
    ]
    out = []
    for i in range(count):
        part = image.crop(boxes[i % len(boxes)])
        if i % 2:
            part = part.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        part.save(buf, "JPEG", quality=90)
        out.append((f"{Path(name).stem}-{i + 1}.jpg", buf.getvalue()))
    return out


class Conversation:
    def __init__(self, sim: DiscordSimulator, app: Application, transcript: Transcript) -> None:
        self.sim, self.app, self.t = sim, app, transcript
        self.cast = build_world(sim, app)

    async def command(
        self, user: User, channel: Channel, name: str, shown: str, **options: object
    ) -> Interaction:
        self.t.said(user.name, f"/{name} {shown}".rstrip())
        return await self.sim.slash(self.app, channel, user, name, options)

    async def answer(self, ix: Interaction, timeout_s: float = 30.0, **kw: object) -> Message:
        message = await self.sim.wait_response(ix, timeout_s=timeout_s, **kw)  # type: ignore[arg-type]
        self.t.bot(BOT, message)
        return message

    async def classify(self, user: User, channel: Channel, image: tuple[str, bytes]) -> Message:
        name, data = image
        attachment = self.sim.upload(data, name, content_type="image/jpeg")
        ix = await self.command(user, channel, "classify", f"image: {name}", image=attachment)
        return await self.answer(ix)

    async def play(self) -> None:
        c, t = self.cast, self.t
        t.scene("Garden Club, #general: a member classifies photos")
        await self.classify(c.alice, c.garden, flower("daisy", 3))
        await self.classify(c.alice, c.garden, flower("sunflower", 5))
        coffee = await self.classify(c.alice, c.garden, photo("coffee.jpg"))

        t.scene("Garden Club: a Wrong vote with a correction, and its review")
        await self.correct(c.alice, coffee, "coffee")
        await self.review(c.bob, c.garden)

        t.scene("Cat Cafe, #general: the server teaches its own label and retrains")
        taught = crops("cat.jpg", 5)
        t.note("the demo ships one cat photo: five crops of it are taught")
        options = {
            "image" if i == 0 else f"image{i + 1}": self.upload(f) for i, f in enumerate(taught)
        }
        names = ", ".join(name for name, _ in taught)
        ix = await self.command(
            c.carol, c.cafe, "teach images", f"label: cat  images: {names}", label="cat", **options
        )
        await self.answer(ix)
        ix = await self.command(c.carol, c.cafe, "retrain", "")
        await self.answer(ix, timeout_s=RETRAIN_TIMEOUT_S, predicate=finished)
        await self.classify(c.alice, c.cafe, photo("cat.jpg"))

    def upload(self, image: tuple[str, bytes]) -> object:
        name, data = image
        return self.sim.upload(data, name, content_type="image/jpeg")

    async def correct(self, user: User, answer: Message, label: str) -> None:
        self.t.said(user.name, "presses [Wrong...] under the coffee answer")
        ix = await self.sim.press_button(self.app, answer, user, "Wrong...")
        picker = await self.answer(ix)
        self.t.said(user.name, "presses [Something else...]")
        opened = await self.sim.press_button(self.app, picker, user, "Something else...")
        form = await self.sim.wait_modal(opened)
        self.t.add(f"{BOT} > opens a form: {form.get('title', '')}")
        self.t.said(user.name, f'types "{label}" and sends the form')
        await self.sim.submit_modal(opened, {"label": label})
        await self.sim.wait_until(lambda: "review queue" in picker.content, timeout_s=15)
        self.t.bot(BOT, picker)

    async def review(self, admin: User, channel: Channel) -> None:
        ix = await self.command(admin, channel, "review", "")
        review = await self.answer(ix)
        self.t.said(admin.name, "presses [Approve]")
        await self.sim.press_button(self.app, review, admin, "Approve")
        await self.sim.wait_until(lambda: review.content.startswith("Approved"), timeout_s=30)
        self.t.bot(BOT, review)


def finished(message: Message) -> bool:
    return bool(message.embeds) and message.embeds[0].get("title") == "Retraining finished"
