"""The review queue as a grid: each waiting correction's image, what the model said and the
label the member proposed, with Approve, Reject and Relabel; for administrators also
"Reject all from this member" (confirmed on the page first). The decisions are the feedback
feature's (:func:`approve_review`, :func:`reject_review`, :func:`reject_member_reviews`),
the ones /review's buttons make; each action redirects back to the grid with what
happened.

As in /review, a trainer sees, opens and decides only the corrections of images answered
in channels they can view (:func:`~bot.dashboard.views.channel_viewer`); another's image
answers 404 and a decision on it is refused."""

from __future__ import annotations

from aiohttp import web

from bot.cogs.feedback import (
    approve_review,
    reject_member_reviews,
    reject_review,
)
from bot.cogs.teach import normalize_label, server_labels
from bot.core.custom_ids import snowflake
from bot.core.errors import UserError
from bot.dashboard.label_views import image_response, page_of
from bot.dashboard.views import (
    bot_of,
    channel_viewer,
    done,
    open_server,
    render,
    require_session,
    server_url,
)

PER_PAGE = 24


def item_of(request: web.Request) -> int:
    return int(request.match_info["item_id"])


async def review(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request)
    channels = (await channel_viewer(request, access)).visible_channel_ids()
    _, waiting = await scope.review_queue(channels=channels)
    pages = max(1, -(-waiting // PER_PAGE))
    page = min(page_of(request), pages)
    items = await scope.review_items(PER_PAGE, (page - 1) * PER_PAGE, channels=channels)
    return render(
        request,
        "review.html",
        {
            "server": access,
            "items": items,
            "waiting": waiting,
            "page": page,
            "pages": pages,
            "labels": await server_labels(bot_of(request), scope),
        },
    )


async def review_image(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request)
    item = await scope.review_item(item_of(request))
    viewer = await channel_viewer(request, access)
    if item is None or not viewer.can_view(item.channel_id):
        raise web.HTTPNotFound(text="No such correction.")
    return await image_response(scope, item.image, scope.feedback_dir)


async def decide(request: web.Request) -> web.StreamResponse:
    """POST approve | reject | relabel (with ``label``) one waiting correction."""
    access, scope = await open_server(request)
    session = require_session(request)
    viewer = await channel_viewer(request, access)
    back = server_url(request, "review", access)
    verb = request.match_info["verb"]
    item_id = item_of(request)
    bot = bot_of(request)
    try:
        if verb == "reject":
            decision = await reject_review(scope, item_id, viewer=viewer)
        elif verb == "approve":
            decision = await approve_review(
                bot, scope, item_id, reviewer_id=session.user_id, viewer=viewer
            )
        else:
            form = await request.post()
            label = normalize_label(str(form.get("label", "")))
            decision = await approve_review(
                bot, scope, item_id, label, reviewer_id=session.user_id, viewer=viewer
            )
    except UserError as exc:
        raise done(request, back, exc.message.replace("**", ""), ok=False) from None
    raise done(request, back, decision.note.replace("**", ""), ok=decision.done)


async def reject_member(request: web.Request) -> web.StreamResponse:
    """POST (administrators): reject every waiting correction one member sent."""
    access, scope = await open_server(request, admin=True)
    back = server_url(request, "review", access)
    member_id = snowflake(request.match_info["member_id"])
    rejected = await reject_member_reviews(scope, member_id)
    raise done(request, back, f"Rejected {rejected} waiting correction(s) from that member.")
