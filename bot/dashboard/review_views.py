"""The review queue as a grid: each waiting correction's image, what the model said and the
label the member proposed, with Approve, Reject and Relabel. The decisions are the
feedback feature's (:func:`approve_review`, :func:`reject_review`), the ones /review's
buttons make; each action redirects back to the grid with what happened."""

from __future__ import annotations

from aiohttp import web

from bot.cogs.feedback import approve_review, reject_review
from bot.cogs.teach import normalize_label, server_labels
from bot.core.errors import UserError
from bot.dashboard.label_views import image_response, page_of
from bot.dashboard.views import bot_of, done, open_server, render, server_url

PER_PAGE = 24


def item_of(request: web.Request) -> int:
    return int(request.match_info["item_id"])


async def review(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request)
    _, waiting = await scope.review_queue()
    pages = max(1, -(-waiting // PER_PAGE))
    page = min(page_of(request), pages)
    items = await scope.review_items(PER_PAGE, (page - 1) * PER_PAGE)
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
    _, scope = await open_server(request)
    item = await scope.review_item(item_of(request))
    if item is None:
        raise web.HTTPNotFound(text="No such correction.")
    return await image_response(scope, item.image, scope.feedback_dir)


async def decide(request: web.Request) -> web.StreamResponse:
    """POST approve | reject | relabel (with ``label``) one waiting correction."""
    access, scope = await open_server(request)
    back = server_url(request, "review", access)
    verb = request.match_info["verb"]
    item_id = item_of(request)
    try:
        if verb == "reject":
            decision = await reject_review(scope, item_id)
        elif verb == "approve":
            decision = await approve_review(bot_of(request), scope, item_id)
        else:
            form = await request.post()
            label = normalize_label(str(form.get("label", "")))
            decision = await approve_review(bot_of(request), scope, item_id, label)
    except UserError as exc:
        raise done(request, back, exc.message.replace("**", ""), ok=False) from None
    raise done(request, back, decision.note.replace("**", ""), ok=decision.done)
