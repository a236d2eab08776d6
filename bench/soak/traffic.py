"""The soak's users: what they send, and how each answer is judged.

Every request ends as one :class:`Record` whose ``outcome`` is ``result`` (a
classification, a taught image, a finished retrain), ``error`` (a clear message: too big,
not an image, too complex...), ``busy`` (busy, slow down, the server's share is used),
``apology`` (the bot's "something went wrong": an unexpected error, a bug) or
``unanswered`` (nothing within the answer timeout).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.soak.corpus import Corpus, Upload
from bot.core.errors import APOLOGY
from tests.discord_sim import ADMINISTRATOR, Application, Channel, DiscordSimulator, Guild, User
from tests.discord_sim.model import LOADING, Attachment, Message

RESULT, ERROR, BUSY, APOLOGISED, UNANSWERED = "result", "error", "busy", "apology", "unanswered"
OUTCOMES = (RESULT, ERROR, BUSY, APOLOGISED, UNANSWERED)
BUSY_MARKERS = ("busy", "slow down", "too many images at once", "sending me a lot")
MEMBERS_PER_GUILD = 300  # round-robin: a member is reused after ~5 min, past any cooldown
FEEDBACK_SHARE = 0.3  # answers to /classify that a member then votes on
# what a vote, a correction or a review step says when it worked
FEEDBACK_DONE = (
    "your vote **right** is counted",
    "counted as a right vote",
    "Thanks! The image is",
    "Thanks! Your correction",
    "is already in the review queue",
    "this image is no longer kept",
    "Approved: the image is",
    "Rejected **",
    "The review queue is empty.",
    "Pick the right label",  # the first step of "Wrong..."
)


@dataclass(frozen=True)
class Record:
    kind: str  # classify, hostile, menu, watched, burst, crowd, teach, retrain
    sent: float  # monotonic
    done: float
    outcome: str
    latency: float | None  # event sent -> final answer (None: unanswered)
    text: str  # the answer's first line, for the summary of messages


def judge(msg: Message) -> str:
    text = msg.text
    if APOLOGY in text:
        return APOLOGISED
    titles = [e.get("title", "") for e in msg.embeds]
    if any("%" in t or t == "Retraining finished" for t in titles):
        return RESULT
    if any(t.startswith("Correction ") for t in titles):  # a /review page
        return RESULT
    if msg.content.startswith(("Learned **", "I already had this image")):
        return RESULT
    if any(m in text for m in FEEDBACK_DONE):
        return RESULT
    if any(m in text.lower() for m in BUSY_MARKERS):
        return BUSY
    return ERROR


def first_line(msg: Message) -> str:
    text = msg.content or next((e.get("description", "") for e in msg.embeds), "")
    return text.splitlines()[0][:90] if text else ""


def answered_at(msg: Message, *, last: bool = False) -> float:
    """When ``msg`` became final (``last``: its last edit, e.g. a retrain's report)."""
    final = [t for t, _, _, flags in msg.history if not flags & LOADING]
    if not final:
        return msg.created_mono
    return final[-1] if last else final[0]


class SoakSimulator(DiscordSimulator):
    """The simulator, plus an index of the bot's replies by the message they answer (a
    watched-channel reply), so that waiting for one does not scan every message."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: dict[int, Message] = {}

    async def publish_message(self, msg: Message) -> None:
        if msg.reference_id is not None and msg.author.bot:
            self.replies.setdefault(msg.reference_id, msg)
        await super().publish_message(msg)


@dataclass
class Server:
    guild: Guild
    general: Channel
    watched: Channel
    admin: User
    members: Iterator[User]
    teach_label: str
    taught: int = 0


class Users:
    """Acts as the members of two servers; each method is one kind of request."""

    def __init__(
        self,
        sim: SoakSimulator,
        app: Application,
        corpus: Corpus,
        servers: list[Server],
        *,
        seed: int,
        hostile_share: float,
        answer_timeout_s: float,
    ) -> None:
        self.sim = sim
        self.app = app
        self.corpus = corpus
        self.servers = servers
        self.rng = random.Random(seed)
        self.hostile_share = hostile_share
        self.timeout_s = answer_timeout_s
        self.records: list[Record] = []
        self.sent: list[float] = []  # monotonic time of every request sent
        self.uploads = 0
        self.late = 0  # interactions the bot acknowledged after Discord's 3 s
        self.in_flight = 0

    @staticmethod
    def make_server(
        sim: DiscordSimulator, name: str, owner: User, teach_label: str
    ) -> tuple[Server, Channel]:
        guild = sim.create_guild(name, owner)
        general = sim.create_channel(guild, "general")
        watched = sim.create_channel(guild, "flowers")
        admin = sim.create_user(f"{name}-admin")
        sim.add_member(guild, admin, ADMINISTRATOR)
        members = []
        for i in range(MEMBERS_PER_GUILD):
            user = sim.create_user(f"{name}-member{i}")
            sim.add_member(guild, user)
            members.append(user)
        return Server(
            guild, general, watched, admin, itertools.cycle(members), teach_label
        ), watched

    # --- plumbing ----------------------------------------------------------------------
    def _attach(self, up: Upload) -> Attachment:
        self.uploads += 1
        return self.sim.upload(
            up.data, up.name, content_type=up.content_type, declared_size=up.declared_size
        )

    def _forget(self, atts: list[Attachment]) -> None:
        """Drop answered uploads from the simulated CDN (bounds this process's memory)."""
        for att in atts:
            self.sim.cdn_files.pop(att.id, None)

    def _record(self, kind: str, sent: float, msg: Message | None, t_answer: float) -> None:
        now = time.monotonic()
        if msg is None:
            self.records.append(Record(kind, sent, now, UNANSWERED, None, ""))
        else:
            outcome = judge(msg)
            self.records.append(Record(kind, sent, now, outcome, t_answer - sent, first_line(msg)))

    async def _interaction(
        self, kind: str, ix_coro: Any, atts: list[Attachment], predicate: Any = None
    ) -> Message | None:
        self.in_flight += 1
        sent = time.monotonic()
        self.sent.append(sent)
        try:
            ix = await ix_coro
            sent = ix.created
            try:
                msg = await self.sim.wait_response(
                    ix, predicate=predicate, timeout_s=self.timeout_s
                )
            except AssertionError:
                msg = None
            self.late += ix.late
            at = answered_at(msg, last=kind == "retrain") if msg else 0.0
            self._record(kind, sent, msg, at)
            return msg
        finally:
            self.in_flight -= 1
            self._forget(atts)

    # --- the requests --------------------------------------------------------------------
    def server(self) -> Server:
        return self.rng.choice(self.servers)

    async def classify(
        self,
        hostile: bool = False,
        user: User | None = None,
        server: Server | None = None,
        kind: str | None = None,
    ) -> None:
        s = server or self.server()
        up = self.corpus.hostile_upload(self.rng) if hostile else self.corpus.good_upload(self.rng)
        att = self._attach(up)
        who = user or next(s.members)
        kind = kind or ("hostile" if hostile else ("burst" if user else "classify"))
        ix = self.sim.slash(self.app, s.general, who, "classify", {"image": att})
        answer = await self._interaction(kind, ix, [att])
        wanted = kind == "classify" and self.rng.random() < FEEDBACK_SHARE
        if wanted and answer is not None and answer.components:
            await self.feedback(s, answer)

    def _uploads(self, n: int, images_only: bool) -> list[Upload]:
        ups = []
        for _ in range(n):
            up = self.corpus.upload(self.rng, self.hostile_share)
            while images_only and not (up.content_type or "").startswith("image/"):
                up = self.corpus.upload(self.rng, self.hostile_share)
            ups.append(up)
        return ups

    async def menu(self) -> None:
        """A member posts 1-4 files in #general; another uses "Classify image" on it."""
        s = self.server()
        atts = [self._attach(u) for u in self._uploads(self.rng.randint(1, 4), False)]
        target = await self.sim.post_message(s.general, next(s.members), "", atts)
        ix = self.sim.message_command(
            self.app, s.general, next(s.members), "Classify image", target
        )
        await self._interaction("menu", ix, atts)

    async def watched(self) -> None:
        """A member posts 1-3 images in the watched channel; the bot must reply."""
        s = self.server()
        self.in_flight += 1
        self.sent.append(time.monotonic())
        atts = [self._attach(u) for u in self._uploads(self.rng.randint(1, 3), True)]
        try:
            msg = await self.sim.post_message(s.watched, next(s.members), "", atts)
            sent = msg.created_mono
            try:
                reply = await self.sim.wait_until(
                    lambda: self.sim.replies.get(msg.id), timeout_s=self.timeout_s
                )
            except TimeoutError:
                reply = None
            self._record("watched", sent, reply, reply.created_mono if reply else 0.0)
        finally:
            self.in_flight -= 1
            self._forget(atts)

    async def burst(self, size: int) -> None:
        """One member sends ``size`` /classify at once (past the per-user cooldown)."""
        s = self.server()
        user = next(s.members)
        await asyncio.gather(*(self.classify(user=user, server=s) for _ in range(size)))

    async def crowd(self, size: int) -> None:
        """``size`` members of one server send a /classify each at once (a community
        event: issue 20's burst)."""
        s = self.server()
        members = [next(s.members) for _ in range(size)]
        await asyncio.gather(*(self.classify(user=u, server=s, kind="crowd") for u in members))

    async def teach(self) -> None:
        """An admin teaches the next image of the server's new label (1 in 6: a hostile
        file, which must be refused)."""
        s = self.server()
        if self.rng.random() < 1 / 6:
            up = self.corpus.hostile_upload(self.rng)
        else:
            files = self.corpus.teachable[s.teach_label]
            path = files[s.taught % len(files)]
            s.taught += 1
            up = Upload("teach", path.name, path.read_bytes(), "image/jpeg")
        att = self._attach(up)
        ix = self.sim.slash(
            self.app, s.general, s.admin, "teach images", {"label": s.teach_label, "image": att}
        )
        await self._interaction("teach", ix, [att])

    async def feedback(self, s: Server, answer: Message) -> None:
        """Another member votes on ``answer``: "Right", or "Wrong..." and a label (a
        member's correction goes to the review queue)."""
        who = next(s.members)
        if self.rng.random() < 0.5:
            ix = self.sim.press_button(self.app, answer, who, "Right")
            await self._interaction("feedback", ix, [])
            return
        ix = self.sim.press_button(self.app, answer, who, "Wrong...")
        picker = await self._interaction("feedback", ix, [])
        if picker is None or not picker.components:
            return
        offered = [
            o["value"]
            for row in picker.components
            for c in row["components"]
            if c["type"] == 3
            for o in c["options"]
        ]
        wanted = [s.teach_label, "daisy", "tulip", "sunflower"]
        # the server's own label is offered once it has been taught (by /teach, at random)
        label = self.rng.choice([lb for lb in wanted if lb in offered] or offered)
        await self._update("feedback", self.sim.choose(self.app, picker, who, [label]), picker)

    async def review(self, server: Server) -> None:
        """The admin opens /review and approves or rejects the first correction."""
        ix = self.sim.slash(self.app, server.general, server.admin, "review", {})
        page = await self._interaction("review", ix, [])
        if page is None or not page.components:
            return
        action = self.rng.choice(["Approve", "Reject"])
        await self._update(
            "review", self.sim.press_button(self.app, page, server.admin, action), page
        )

    async def _update(self, kind: str, ix_coro: Any, target: Message) -> None:
        """A component interaction whose answer edits ``target`` (or, for an error, is a
        new message)."""
        self.in_flight += 1
        self.sent.append(time.monotonic())
        before = target.content
        try:
            ix = await ix_coro
            try:
                # A deferred update makes ``target`` itself the interaction's message, with
                # its old content: only a new message (an error) or the edit count.
                msg = await self.sim.wait_until(
                    lambda: (
                        target
                        if target.content != before
                        else next((m for m in ix.final if m is not target), None)
                    ),
                    timeout_s=self.timeout_s,
                )
            except TimeoutError:
                msg = None
            self.late += ix.late
            self._record(kind, ix.created, msg, time.monotonic())
        finally:
            self.in_flight -= 1

    async def retrain(self, server: Server) -> None:
        ix = self.sim.slash(self.app, server.general, server.admin, "retrain", {})
        await self._interaction(
            "retrain", ix, [], predicate=lambda m: not m.content.startswith("Retraining")
        )

    async def autoclassify_on(self, server: Server) -> None:
        """Watch ``server.watched`` through /autoclassify (the other server's channel is
        watched by configuration)."""
        ix = await self.sim.slash(
            self.app, server.watched, server.admin, "autoclassify", {"mode": "on"}
        )
        msg = await self.sim.wait_response(ix, timeout_s=30)
        assert "reply to images" in msg.content, msg.content


def tally(records: list[Record]) -> dict[str, dict[str, int]]:
    """``{kind: {outcome: count}}`` plus ``all``."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for r in records:
        out[r.kind][r.outcome] += 1
        out["all"][r.outcome] += 1
    return out
