"""REST routes of interactions: the callback, follow-ups and the webhook's messages."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from tests.discord_sim.components import validate_choices, validate_modal
from tests.discord_sim.model import EPHEMERAL, LOADING, Message, snowflake
from tests.discord_sim.rest_messages import apply_payload
from tests.discord_sim.validation import BODY, DiscordError, json_response, validate_message

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator, Interaction

#: the callback types Discord accepts for each interaction type
CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


def check_callback_type(ix: Interaction, rtype: int) -> None:
    """Refuse a callback type Discord does not allow for this interaction (e.g. a modal in
    answer to a modal submit, updating a message a command has not got)."""
    allowed = CALLBACKS.get(ix.kind, set())
    if rtype in (6, 7) and ix.component_message is None:
        allowed = allowed - {6, 7}
    if rtype not in allowed:
        raise DiscordError(
            400, 50035, "Invalid Form Body", {"type": f"{rtype} is invalid for this interaction"}
        )


class InteractionRoutes:
    def __init__(self, sim: DiscordSimulator) -> None:
        self.sim = sim

    def routes(self, p: str) -> list[web.RouteDef]:
        wh = p + "/webhooks/{app_id}/{token}"
        return [
            web.post(p + "/interactions/{ix_id}/{token}/callback", self.callback),
            web.post(wh, self.followup),
            web.get(wh + "/messages/{message_id}", self.webhook_message),
            web.patch(wh + "/messages/{message_id}", self.webhook_message),
            web.delete(wh + "/messages/{message_id}", self.webhook_message),
        ]

    async def callback(self, request: web.Request) -> web.Response:
        sim = self.sim
        ix = sim.interactions.get(int(request.match_info["ix_id"]))
        if ix is None or ix.token != request.match_info["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if ix.response_type is None and time.monotonic() - ix.created > sim.response_deadline_s:
            ix.late = True
            sim.notify()
            raise DiscordError(404, 10062, "Unknown interaction")
        if ix.response_type is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        ix.response_received_at = request.get("received_at")
        payload, files = request[BODY]
        rtype = int(payload.get("type", 0))
        data = payload.get("data") or {}
        check_callback_type(ix, rtype)
        if rtype in (8, 9):
            if rtype == 8:
                ix.choices = validate_choices(data)
            else:
                validate_modal(data)
                ix.modal = data
            ix.response_type = rtype
            ix.responded_at = time.monotonic()
            sim.notify()
            return json_response({"interaction": {"id": str(ix.id), "type": ix.kind}})
        if rtype == 4:
            validate_message(data, len(files))
            flags = int(data.get("flags") or 0) & EPHEMERAL
        elif rtype == 5:
            flags = (int(data.get("flags") or 0) & EPHEMERAL) | LOADING
            data = {}
        else:  # 6 or 7: the message the component was on
            target = ix.component_message
            assert target is not None  # check_callback_type
            if rtype == 7:
                validate_message(data, len(files), edit=True)
                apply_payload(self.sim, target, data, files, replace=True)
            ix.response_type = rtype
            ix.responded_at = time.monotonic()
            ix.original = target
            sim.notify()
            return json_response(
                {
                    "interaction": {"id": str(ix.id), "type": ix.kind},
                    "resource": {"type": rtype, "message": target.payload()},
                }
            )
        if ix.ephemeral_only and not flags & EPHEMERAL:
            ix.forced_private += 1
            flags |= EPHEMERAL
        msg = Message(
            snowflake(), ix.channel_id, ix.guild_id, ix.app.user, flags=flags, interaction_id=ix.id
        )
        apply_payload(self.sim, msg, data, files)
        ix.response_type = rtype
        ix.responded_at = time.monotonic()
        ix.original = msg
        sim.notify()
        return json_response(
            {
                "interaction": {
                    "id": str(ix.id),
                    "type": ix.kind,
                    "response_message_id": str(msg.id),
                    "response_message_loading": msg.loading,
                    "response_message_ephemeral": msg.ephemeral,
                },
                "resource": {"type": rtype, "message": msg.payload()},
            }
        )

    def _interaction_for_webhook(self, request: web.Request) -> Interaction:
        ix = self.sim.interactions_by_token.get(request.match_info["token"])
        if ix is None or str(ix.app.id) != request.match_info["app_id"]:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if time.monotonic() - ix.created > self.sim.interaction_token_lifetime_s:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return ix

    async def followup(self, request: web.Request) -> web.Response:
        ix = self._interaction_for_webhook(request)
        if ix.response_type is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        payload, files = request[BODY]
        validate_message(payload, len(files))
        original = ix.original
        if original is not None and original.loading and not original.deleted:
            # The first follow-up after a deferred response replaces the "thinking" message
            # and keeps its visibility (the follow-up's ephemeral flag is ignored).
            original.flags &= ~LOADING
            apply_payload(self.sim, original, payload, files, replace=True)
            msg = original
        else:
            flags = int(payload.get("flags") or 0) & EPHEMERAL
            if ix.ephemeral_only and not flags & EPHEMERAL:
                ix.forced_private += 1
                flags |= EPHEMERAL
            msg = Message(
                snowflake(),
                ix.channel_id,
                ix.guild_id,
                ix.app.user,
                flags=flags,
                interaction_id=ix.id,
            )
            apply_payload(self.sim, msg, payload, files)
            ix.followups.append(msg)
        self.sim.notify()
        if request.query.get("wait", "false").lower() not in ("true", "1"):
            return web.Response(status=204)
        return json_response(msg.payload())

    async def webhook_message(self, request: web.Request) -> web.StreamResponse:
        ix = self._interaction_for_webhook(request)
        mid = request.match_info["message_id"]
        if mid == "@original":
            msg = ix.original
        else:
            msg = next((m for m in ix.followups if str(m.id) == mid), None)
            if msg is None and ix.original is not None and str(ix.original.id) == mid:
                msg = ix.original
        if msg is None or msg.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            msg.deleted = True
            self.sim.notify()
            return web.Response(status=204)
        if request.method == "PATCH":
            payload, files = request[BODY]
            validate_message(payload, len(files), edit=True)
            msg.flags &= ~LOADING
            apply_payload(self.sim, msg, payload, files, replace=True)
            self.sim.notify()
        return json_response(msg.payload())
