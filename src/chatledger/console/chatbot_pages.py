"""Chatbots (list, create, settings with a diff preview before saving, configuration history)
and their documents (upload with progress, versions and chunk counts, delete)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from chatledger.chatbots.config import merge
from chatledger.chatbots.service import Chatbot, parse_config
from chatledger.console import diffs
from chatledger.console.web import ConsoleRoute, Ctx, console_ctx, redirect, render
from chatledger.errors import ChatLedgerError, Conflict, Forbidden, InvalidInput
from chatledger.identity.roles import Permission
from chatledger.identity.service import require

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
CtxDep = Annotated[Ctx, Depends(console_ctx)]

# form field -> kind; the field name is the setting's dotted path
SETTINGS_FIELDS: dict[str, str] = {
    "name": "str",
    "system_prompt": "text",
    "model.provider": "str",
    "model.model": "str",
    "model.base_url": "optstr",
    "model.temperature": "float",
    "model.max_tokens": "int",
    "retrieval.top_k": "int",
    "retrieval.min_score": "float",
    "retrieval.chunk_size": "int",
    "retrieval.chunk_overlap": "int",
    "guardrails.injection_policy": "str",
    "guardrails.injection_threshold": "float",
    "guardrails.max_message_chars": "int",
    "guardrails.blocked_reply": "text",
    "access.public_widget": "bool",
    "access.allowed_origins": "lines",
    "idle_timeout_minutes": "int",
}


def _parse(kind: str, path: str, raw: str | None) -> Any:
    if kind == "bool":
        return raw in ("on", "true", "1")
    text = (raw or "").replace("\r\n", "\n")
    try:
        if kind == "int":
            return int(text.strip())
        if kind == "float":
            return float(text.strip())
    except ValueError:
        raise InvalidInput(f"{path}: {text.strip()!r} is not a number") from None
    if kind == "lines":
        return [line.strip() for line in text.split("\n") if line.strip()]
    if kind == "optstr":
        return text.strip() or None
    if kind == "str":
        return text.strip()
    return text


def _get(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def proposed_change(
    bot: Chatbot, form: Mapping[str, Any]
) -> tuple[dict[str, Any], list[diffs.Change]]:
    """The patch a settings form asks for, validated, and its diff against the current one."""
    current = bot.config.model_dump(mode="json") | {"name": bot.name}
    patch: dict[str, Any] = {}
    for path, kind in SETTINGS_FIELDS.items():
        if kind != "bool" and path not in form:
            continue
        raw = form.get(path)
        value = _parse(kind, path, raw if isinstance(raw, str) else None)
        if value != _get(current, path):
            _set(patch, path, value)
    api_key = form.get("model.api_key")
    if isinstance(api_key, str) and api_key.strip():
        _set(patch, "model.api_key", api_key.strip())
    name = patch.get("name", bot.name)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput("name must be a non-empty string of at most 200 characters")
    config_patch = {k: v for k, v in patch.items() if k != "name"}
    new_config = parse_config(merge(bot.config.model_dump(mode="json"), config_patch))
    before = bot.config.public_view() | {"name": bot.name}
    after = new_config.public_view() | {"name": name}
    return patch, diffs.changes(before, after)


def _bot_context(ctx: Ctx, bot: Chatbot) -> dict[str, Any]:
    config = bot.config.public_view()
    return {
        "bot": bot,
        "config": config,
        "origins_text": "\n".join(bot.config.access.allowed_origins),
        "editable": ctx.can(Permission.CHATBOT_WRITE),
        "widget_snippet": (
            f'<script src="{_base(ctx.request)}/widget.js" data-chatbot="{bot.public_key}">'
            "</script>"
        ),
    }


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/console/chatbots")
def chatbots(ctx: CtxDep) -> Response:
    bots = ctx.platform.chatbots.list_chatbots(ctx.principal, limit=200)
    return render(ctx.request, "chatbots.html", {"bots": bots}, ctx=ctx)


@router.post("/console/chatbots")
async def create_chatbot(ctx: CtxDep) -> Response:
    form = await ctx.request.form()
    name = form.get("name")
    prompt = form.get("system_prompt")
    settings: dict[str, Any] = {}
    if isinstance(prompt, str) and prompt.strip():
        settings["system_prompt"] = prompt.replace("\r\n", "\n")
    bot = await run_in_threadpool(
        ctx.platform.chatbots.create, ctx.principal, name if isinstance(name, str) else "", settings
    )
    return redirect(ctx.request, f"/console/chatbots/{bot.id}?notice=created")


@router.get("/console/chatbots/{chatbot_id}")
def chatbot(chatbot_id: str, ctx: CtxDep) -> Response:
    bot = ctx.platform.chatbots.get(ctx.principal, chatbot_id)
    return render(ctx.request, "chatbot.html", _bot_context(ctx, bot), ctx=ctx)


@router.post("/console/chatbots/{chatbot_id}/preview")
async def preview_settings(chatbot_id: str, ctx: CtxDep) -> Response:
    """The diff a settings change would make, shown before anything is saved."""
    require(ctx.principal, Permission.CHATBOT_WRITE, "chatbot", chatbot_id)
    bot = ctx.platform.chatbots.get(ctx.principal, chatbot_id)
    form = await ctx.request.form()
    error = ""
    changes: list[diffs.Change] = []
    try:
        _, changes = proposed_change(bot, form)
    except InvalidInput as exc:
        error = exc.message
    context = {"bot": bot, "changes": changes, "error": error}
    if ctx.htmx:
        return render(ctx.request, "_preview.html", context, ctx=ctx)
    page = _bot_context(ctx, bot) | context
    return render(ctx.request, "chatbot.html", page, ctx=ctx)


@router.post("/console/chatbots/{chatbot_id}/settings")
async def save_settings(chatbot_id: str, ctx: CtxDep) -> Response:
    require(ctx.principal, Permission.CHATBOT_WRITE, "chatbot", chatbot_id)
    bot = ctx.platform.chatbots.get(ctx.principal, chatbot_id)
    form = await ctx.request.form()
    base = form.get("base_version")
    if isinstance(base, str) and base.isdigit() and int(base) != bot.config_version:
        raise Conflict(
            f"the configuration changed since you opened it (now version {bot.config_version}): "
            "reload the page and preview again"
        )
    patch, changes = proposed_change(bot, form)
    if not changes:
        return redirect(ctx.request, f"/console/chatbots/{chatbot_id}?notice=unchanged")
    await run_in_threadpool(ctx.platform.chatbots.update, ctx.principal, chatbot_id, patch)
    return redirect(ctx.request, f"/console/chatbots/{chatbot_id}?notice=saved")


@router.get("/console/chatbots/{chatbot_id}/history")
def history(chatbot_id: str, ctx: CtxDep, a: int | None = None, b: int | None = None) -> Response:
    bot = ctx.platform.chatbots.get(ctx.principal, chatbot_id)
    versions = ctx.platform.chatbots.versions(ctx.principal, chatbot_id)
    numbers = [v["version"] for v in versions]
    latest = numbers[-1] if numbers else 1
    to_version: int = b if b is not None and b in numbers else latest
    from_version: int = a if a is not None and a in numbers else max(1, to_version - 1)
    a, b = from_version, to_version
    by_number = {v["version"]: v for v in versions}
    before = by_number[a]["config"] if a in by_number else {}
    after = by_number[b]["config"] if b in by_number else {}
    changes = diffs.changes(before, after)
    names = _names_of(ctx, [str(v["actor_id"]) for v in versions])
    return render(
        ctx.request,
        "history.html",
        {"bot": bot, "versions": versions, "a": a, "b": b, "changes": changes, "names": names},
        ctx=ctx,
    )


def _names_of(ctx: Ctx, user_ids: list[str]) -> dict[str, str]:
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = ctx.platform.ledger.store.query(
        f"SELECT id, email FROM users WHERE id IN ({marks})", tuple(ids)
    )
    return {str(r[0]): str(r[1]) for r in rows}


# -- documents ----------------------------------------------------------------------------


def _documents(ctx: Ctx, bot: Chatbot) -> list[dict[str, Any]]:
    docs = ctx.platform.documents.list_documents(ctx.principal, bot.id)
    ids = [d["id"] for d in docs]
    versions: dict[str, list[dict[str, Any]]] = {}
    if ids:
        marks = ",".join("?" * len(ids))
        rows = ctx.platform.ledger.store.query(
            "SELECT document_id, version, size, chunk_count, created_at, sha256 "
            f"FROM document_versions WHERE document_id IN ({marks}) ORDER BY version DESC",
            tuple(ids),
        )
        for doc_id, version, size, chunks, created, sha in rows:
            versions.setdefault(str(doc_id), []).append(
                {
                    "version": version,
                    "size": size,
                    "chunks": chunks,
                    "created_at": created,
                    "sha256": sha,
                }
            )
    for doc in docs:
        doc["versions"] = versions.get(doc["id"], [])
    return docs


@router.get("/console/chatbots/{chatbot_id}/documents")
def documents(chatbot_id: str, ctx: CtxDep) -> Response:
    ctx.platform.abuse.observe_access(ctx.principal, "document", f"{chatbot_id}/*")
    bot = ctx.platform.chatbots.get(ctx.principal, chatbot_id)
    context = {
        "bot": bot,
        "docs": _documents(ctx, bot),
        "editable": ctx.can(Permission.DOCUMENT_WRITE),
        "max_mb": ctx.platform.documents.limits.max_bytes // (1024 * 1024),
    }
    return render(ctx.request, "documents.html", context, ctx=ctx)


@router.post("/console/chatbots/{chatbot_id}/documents")
async def upload(chatbot_id: str, ctx: CtxDep) -> Response:
    require(ctx.principal, Permission.DOCUMENT_WRITE, "chatbot", chatbot_id)
    bot = ctx.platform.chatbots.get(ctx.principal, chatbot_id)
    form = await ctx.request.form()
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    if not files:
        raise InvalidInput("choose at least one file to upload")
    limit = ctx.platform.documents.limits.max_bytes
    results: list[dict[str, Any]] = []
    for item in files:
        data = await item.read(limit + 1)
        await item.close()
        name = item.filename or ""
        if len(data) > limit:
            results.append({"name": name, "ok": False, "message": f"larger than {limit} bytes"})
            continue
        try:
            done = await run_in_threadpool(
                ctx.platform.documents.upload,
                ctx.principal,
                bot.id,
                name,
                data,
                item.content_type,
            )
        except Forbidden:
            raise
        except ChatLedgerError as exc:
            results.append({"name": name, "ok": False, "message": exc.message})
            continue
        results.append(
            {
                "name": done.name,
                "ok": True,
                "message": f"version {done.version}, {done.chunks} chunks"
                + (
                    f", {done.excluded_chunks} kept out of answers by the guard"
                    if done.excluded_chunks
                    else ""
                ),
            }
        )
    if not ctx.htmx:
        return redirect(ctx.request, f"/console/chatbots/{bot.id}/documents")
    context = {
        "bot": bot,
        "results": results,
        "docs": _documents(ctx, bot),
        "editable": True,
    }
    return render(ctx.request, "_upload_results.html", context, ctx=ctx)


def _document_row(ctx: Ctx, document_id: str) -> dict[str, Any]:
    rows = ctx.platform.ledger.store.query(
        "SELECT d.id, d.name, d.chatbot_id, d.current_version, v.chunk_count, v.size "
        "FROM documents d JOIN document_versions v ON v.document_id = d.id "
        "AND v.version = d.current_version WHERE d.id = ? AND d.deleted_at IS NULL",
        (document_id,),
    )
    if not rows:
        from chatledger.errors import NotFound

        raise NotFound(f"no document {document_id}")
    keys = ("id", "name", "chatbot_id", "version", "chunks", "size")
    row = dict(zip(keys, rows[0], strict=True))
    ctx.platform.chatbots.get(ctx.principal, str(row["chatbot_id"]))  # same workspace
    return row


@router.get("/console/documents/{document_id}/delete")
def confirm_delete(document_id: str, ctx: CtxDep) -> Response:
    ctx.platform.abuse.observe_access(ctx.principal, "document", document_id)
    require(ctx.principal, Permission.DOCUMENT_WRITE, "document", document_id)
    doc = _document_row(ctx, document_id)
    return render(ctx.request, "document_delete.html", {"doc": doc}, ctx=ctx)


@router.post("/console/documents/{document_id}/delete")
async def delete_document(document_id: str, ctx: CtxDep) -> Response:
    ctx.platform.abuse.observe_access(ctx.principal, "document", document_id)
    doc = _document_row(ctx, document_id)
    await run_in_threadpool(ctx.platform.documents.delete, ctx.principal, document_id)
    return redirect(ctx.request, f"/console/chatbots/{doc['chatbot_id']}/documents?notice=deleted")
