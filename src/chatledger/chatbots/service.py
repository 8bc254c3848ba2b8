"""Chatbots: create, read, change and delete, every change audited with before and after.

The configuration in force at any past moment is read back from the version table, which
mirrors the ``chatbot.create`` / ``chatbot.update`` events (their payloads carry the whole
configuration before and after, so the ledger alone can rebuild it too).
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from chatledger.chatbots.config import ChatbotConfig, diff, merge
from chatledger.errors import InvalidInput, NotFound
from chatledger.events import Entity, Event
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require, same_workspace
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import WorkContext

_COLUMNS = (
    "id, workspace_id, name, config, config_version, public_key, created_at, updated_at, deleted_at"
)


@dataclass(frozen=True)
class Chatbot:
    id: str
    workspace_id: str
    name: str
    config: ChatbotConfig
    config_version: int
    public_key: str
    created_at: str
    updated_at: str
    deleted_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "name": self.name,
            "config_version": self.config_version,
            "public_key": self.public_key,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            **self.config.public_view(),
        }


def parse_config(data: dict[str, Any]) -> ChatbotConfig:
    try:
        return ChatbotConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidInput(f"invalid chatbot settings: {problems}") from None


# ISO 8601 extended format with a date and a time: 2026-11-28T15:00:00Z,
# 2026-11-28T16:00:00.5+01:00, 2026-11-28T15:00 (no offset: UTC).
_MOMENT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
MOMENT_HELP = (
    "an ISO 8601 date and time such as 2026-11-28T15:00:00Z or 2026-11-28T16:00:00+01:00 "
    "(without an offset it is UTC)"
)


def parse_moment(value: str) -> datetime:
    """``value`` (ISO 8601, with an offset or Z; naive means UTC) as an aware UTC datetime.

    Anything else (a bare date, ``yesterday``, an impossible date) is refused with
    :class:`InvalidInput`, so that a moment is never compared as a string.
    """
    text = value.strip() if isinstance(value, str) else ""
    if _MOMENT.fullmatch(text):
        normalized = text.replace(",", ".")
        if normalized[-1] in "Zz":
            normalized = normalized[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(normalized)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    shown = text if len(text) <= 60 else text[:60] + "..."
    hint = ""
    if re.search(r"[0-9] [0-9]{2}(?::?[0-9]{2})?$", text):
        hint = " (in a URL, send the + of an offset as %2B)"
    raise InvalidInput(f"at must be {MOMENT_HELP}; got {shown!r}{hint}")


def _stored_moment(value: str) -> datetime:
    """A stored UTC timestamp (``2026-11-28T14:47:19.123456Z``) as an aware datetime."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _strict_text(value: str, field: str) -> str:
    """``value`` when it is text that UTF-8 can encode; a lone surrogate (an unpaired
    ``\\udXXX`` escape in the JSON sent) is refused with :class:`InvalidInput`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise InvalidInput(
            f"{field} must be valid Unicode text: it contains a lone surrogate "
            f"(U+{ord(bad):04X}) at position {exc.start}",
            details={"field": field},
        ) from None
    return value


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput("name must be a non-empty string of at most 200 characters")
    return _strict_text(name, "name").strip()


def _row(row: tuple[Any, ...]) -> Chatbot:
    id_, ws, name, config, version, public_key, created, updated, deleted = row
    return Chatbot(
        id_,
        ws,
        name,
        ChatbotConfig.model_validate_json(config),
        int(version),
        public_key,
        created,
        updated,
        deleted,
    )


class ChatbotService:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def create(self, principal: Principal, name: str, settings: dict[str, Any]) -> Chatbot:
        require(principal, Permission.CHATBOT_WRITE, "chatbot", "new")
        name = _check_name(name)
        config = parse_config(settings)
        chatbot_id = f"bot_{uuid.uuid4().hex[:12]}"
        public_key = f"pk_{secrets.token_urlsafe(18)}"
        now = utc_timestamp()
        config_json = config.model_dump_json()

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            ctx.txn.execute(
                f"INSERT INTO chatbots ({_COLUMNS}) VALUES (?, ?, ?, ?, 1, ?, ?, ?, NULL)",
                (chatbot_id, principal.workspace_id, name, config_json, public_key, now, now),
            )
            ctx.txn.execute(
                "INSERT INTO chatbot_config_versions VALUES (?, 1, ?, ?, ?, ?)",
                (chatbot_id, config_json, now, principal.actor.id, ctx.next_seq),
            )
            return None, [
                Event(
                    "chatbot.create",
                    principal.actor,
                    Entity("chatbot", chatbot_id),
                    attributes={
                        "chatbot_id": chatbot_id,
                        "workspace_id": principal.workspace_id,
                        "config_version": 1,
                        "name": name,
                    },
                    payload={"before": None, "after": config.public_view()},
                )
            ]

        self.ledger.transact(work)
        return self.get(principal, chatbot_id)

    def get(
        self, principal: Principal, chatbot_id: str, *, include_deleted: bool = False
    ) -> Chatbot:
        require(principal, Permission.CHATBOT_READ, "chatbot", chatbot_id)
        bot = self.find(chatbot_id, include_deleted=include_deleted)
        if bot is None:
            raise NotFound(f"no chatbot {chatbot_id}")
        same_workspace(principal, bot.workspace_id, "chatbot", chatbot_id)
        return bot

    def find(self, chatbot_id: str, *, include_deleted: bool = False) -> Chatbot | None:
        rows = self.ledger.store.query(
            f"SELECT {_COLUMNS} FROM chatbots WHERE id = ?", (chatbot_id,)
        )
        if not rows:
            return None
        bot = _row(rows[0])
        if bot.deleted_at and not include_deleted:
            return None
        return bot

    def by_public_key(self, public_key: str) -> Chatbot | None:
        rows = self.ledger.store.query(
            f"SELECT {_COLUMNS} FROM chatbots WHERE public_key = ? AND deleted_at IS NULL",
            (public_key,),
        )
        return _row(rows[0]) if rows else None

    def list_chatbots(
        self, principal: Principal, *, after: str | None = None, limit: int = 50
    ) -> list[Chatbot]:
        require(principal, Permission.CHATBOT_READ, "chatbot", "*")
        rows = self.ledger.store.query(
            f"SELECT {_COLUMNS} FROM chatbots WHERE workspace_id = ? AND deleted_at IS NULL "
            "AND id > ? ORDER BY id LIMIT ?",
            (principal.workspace_id, after or "", limit),
        )
        return [_row(r) for r in rows]

    def update(self, principal: Principal, chatbot_id: str, changes: dict[str, Any]) -> Chatbot:
        require(principal, Permission.CHATBOT_WRITE, "chatbot", chatbot_id)
        if not isinstance(changes, dict) or not changes:
            raise InvalidInput("nothing to change")
        current = self.get(principal, chatbot_id)
        name = _check_name(changes.pop("name")) if "name" in changes else current.name
        base = current.config.model_dump(mode="json")
        new_config = parse_config(merge(base, changes))
        before, after = current.config.public_view(), new_config.public_view()
        changed = diff(base, new_config.model_dump(mode="json"))
        if name != current.name:
            changed.insert(0, {"path": "name", "before": current.name, "after": name})
        if not changed:
            return current
        for change in changed:  # a provider key is a secret: say that it changed, never what to
            if change["path"] == "model.api_key":
                change["before"] = "[set]" if change["before"] else None
                change["after"] = "[set]" if change["after"] else None
        now = utc_timestamp()
        config_json = new_config.model_dump_json()

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            rows = ctx.txn.execute(
                "SELECT config_version FROM chatbots WHERE id = ?", (chatbot_id,)
            )
            version = int(rows[0][0]) + 1
            ctx.txn.execute(
                "UPDATE chatbots SET name = ?, config = ?, config_version = ?, updated_at = ? "
                "WHERE id = ?",
                (name, config_json, version, now, chatbot_id),
            )
            ctx.txn.execute(
                "INSERT INTO chatbot_config_versions VALUES (?, ?, ?, ?, ?, ?)",
                (chatbot_id, version, config_json, now, principal.actor.id, ctx.next_seq),
            )
            return None, [
                Event(
                    "chatbot.update",
                    principal.actor,
                    Entity("chatbot", chatbot_id),
                    attributes={
                        "chatbot_id": chatbot_id,
                        "workspace_id": principal.workspace_id,
                        "config_version": version,
                        "changed": [c["path"] for c in changed],
                    },
                    payload={
                        "before": before | {"name": current.name},
                        "after": after | {"name": name},
                        "changes": changed,
                    },
                )
            ]

        self.ledger.transact(work)
        return self.get(principal, chatbot_id)

    def delete(self, principal: Principal, chatbot_id: str) -> None:
        require(principal, Permission.CHATBOT_WRITE, "chatbot", chatbot_id)
        bot = self.get(principal, chatbot_id)
        from chatledger.rag.index_factory import index_for

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            now = utc_timestamp()
            ctx.txn.execute("UPDATE chatbots SET deleted_at = ? WHERE id = ?", (now, chatbot_id))
            docs = ctx.txn.execute(
                "SELECT id FROM documents WHERE chatbot_id = ? AND deleted_at IS NULL",
                (chatbot_id,),
            )
            ctx.txn.execute(
                "UPDATE documents SET deleted_at = ? WHERE chatbot_id = ? AND deleted_at IS NULL",
                (now, chatbot_id),
            )
            index_for(self.ledger.store).remove_chatbot(ctx.txn.conn, chatbot_id)
            return None, [
                Event(
                    "chatbot.delete",
                    principal.actor,
                    Entity("chatbot", chatbot_id),
                    attributes={
                        "chatbot_id": chatbot_id,
                        "workspace_id": bot.workspace_id,
                        "documents_removed": len(docs),
                        "name": bot.name,
                    },
                    payload={
                        "before": bot.config.public_view() | {"name": bot.name},
                        "after": None,
                    },
                )
            ]

        self.ledger.transact(work)

    # -- configuration history -----------------------------------------------------------

    def versions(self, principal: Principal, chatbot_id: str) -> list[dict[str, Any]]:
        self.get(principal, chatbot_id, include_deleted=True)
        rows = self.ledger.store.query(
            "SELECT version, config, created_at, actor_id, seq FROM chatbot_config_versions "
            "WHERE chatbot_id = ? ORDER BY version",
            (chatbot_id,),
        )
        return [
            {
                "version": v,
                "created_at": ts,
                "actor_id": actor,
                "seq": seq,
                "config": ChatbotConfig.model_validate_json(cfg).public_view(),
            }
            for v, cfg, ts, actor, seq in rows
        ]

    def version_at(self, principal: Principal, chatbot_id: str, at: str) -> dict[str, Any]:
        """The configuration in force at ``at`` (see :func:`parse_moment`)."""
        moment = parse_moment(at)
        versions = self.versions(principal, chatbot_id)
        in_force = [v for v in versions if _stored_moment(v["created_at"]) <= moment]
        if not in_force:
            first = f" (created {versions[0]['created_at']})" if versions else ""
            raise NotFound(f"chatbot {chatbot_id} did not exist at {utc_timestamp(moment)}{first}")
        found: dict[str, Any] = in_force[-1]
        return found

    def version_diff(
        self, principal: Principal, chatbot_id: str, a: int, b: int
    ) -> list[dict[str, Any]]:
        versions = {v["version"]: v for v in self.versions(principal, chatbot_id)}
        if a not in versions or b not in versions:
            raise NotFound(f"chatbot {chatbot_id} has no version {a if a not in versions else b}")
        return diff(versions[a]["config"], versions[b]["config"])


def config_json(config: ChatbotConfig) -> bytes:
    return orjson.dumps(config.model_dump(mode="json"))
