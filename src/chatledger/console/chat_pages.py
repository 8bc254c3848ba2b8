"""The chat playground: chat with a chatbot as the signed-in user and see, under each answer,
the cited sources with their scores, the model, the tokens and the groundedness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from chatledger.chat.replay import document_names
from chatledger.console.web import ConsoleRoute, Ctx, console_ctx, render
from chatledger.errors import InvalidInput
from chatledger.identity.roles import Permission
from chatledger.identity.service import require
from chatledger.ledger.service import Ledger

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
CtxDep = Annotated[Ctx, Depends(console_ctx)]


def with_document_names(ledger: Ledger, answer: dict[str, Any]) -> dict[str, Any]:
    sources = answer.get("sources") or []
    names = document_names(ledger, sorted({str(s["document_id"]) for s in sources}))
    for source in sources:
        key = (str(source["document_id"]), int(source["document_version"]))
        source["document_name"] = names.get(key, source["document_id"])
    return answer


@router.get("/console/playground")
def playground(ctx: CtxDep, chatbot: str | None = None) -> Response:
    require(ctx.principal, Permission.CHAT, "chatbot", chatbot or "*")
    bots = ctx.platform.chatbots.list_chatbots(ctx.principal, limit=200)
    chosen = next((b for b in bots if b.id == chatbot), None)
    if chosen is None and len(bots) == 1:
        chosen = bots[0]
    return render(ctx.request, "playground.html", {"bots": bots, "bot": chosen}, ctx=ctx)


async def _form_text(request: Request, name: str) -> str:
    form = await request.form()
    value = form.get(name)
    return value if isinstance(value, str) else ""


@router.post("/console/playground/{chatbot_id}/messages")
async def send(chatbot_id: str, ctx: CtxDep) -> Response:
    require(ctx.principal, Permission.CHAT, "chatbot", chatbot_id)
    text = (await _form_text(ctx.request, "text")).strip()
    if not text:
        raise InvalidInput("type a message first")
    conversation_id = (await _form_text(ctx.request, "conversation_id")).strip()
    chat = ctx.platform.chat
    if not conversation_id:
        conv = await run_in_threadpool(
            lambda: chat.start(
                ctx.principal,
                chatbot_id,
                user_id=ctx.principal.actor.id,
                channel="console",
                user_agent=ctx.request.headers.get("user-agent"),
            )
        )
        conversation_id = conv.id
    else:
        conv = chat.get(ctx.principal, conversation_id)
        if conv.chatbot_id != chatbot_id:
            raise InvalidInput("that conversation belongs to another chatbot")
    result = await run_in_threadpool(chat.send, ctx.principal, conversation_id, text)
    answer = with_document_names(ctx.platform.ledger, result.answer)
    context = {
        "text": text,
        "answer": answer,
        "conversation_id": conversation_id,
        "can_replay": ctx.can(Permission.CONVERSATION_READ),
    }
    return render(ctx.request, "_turn.html", context, ctx=ctx)


@router.post("/console/messages/{message_id}/feedback")
async def feedback(message_id: str, ctx: CtxDep) -> Response:
    rating = await _form_text(ctx.request, "rating")
    comment = (await _form_text(ctx.request, "comment")).strip() or None
    result = await run_in_threadpool(
        ctx.platform.chat.feedback, ctx.principal, message_id, rating, comment
    )
    return render(ctx.request, "_feedback_done.html", {"result": result}, ctx=ctx)
