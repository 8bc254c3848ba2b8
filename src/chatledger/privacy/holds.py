"""Legal holds: on a conversation, a data subject (user or visitor) or a chatbot.

While a hold is active, retention expiry skips everything it covers and data-subject erasure
(``Ledger.erase_subject``) of a covered subject is refused with :class:`LegalHoldActive`.
Placing and releasing a hold are ledger events (``privacy.hold_placed``,
``privacy.hold_released``) committed with the row of ``legal_holds`` they change.

What a hold covers:

* ``conversation``: every entry of that conversation;
* ``subject``: every entry whose data subject is that user or visitor, and every entry
  whose actor is that user or visitor (kept as the keyed pseudonym, never the raw id);
* ``chatbot``: every entry of that chatbot.

Erasure of a subject is refused when a hold names the subject, any conversation of the
subject, or any chatbot the subject talked to.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from chatledger.errors import Conflict, InvalidInput, NotFound
from chatledger.events import Actor, Entity, Event
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import HoldCheck, Ledger
from chatledger.ledger.writer import WorkContext

if TYPE_CHECKING:
    from chatledger.platform import Platform

SCOPE_TYPES = ("conversation", "subject", "chatbot")
MAX_REASON = 2000
_COLUMNS = (
    "id, workspace_id, scope_type, scope_id, reason, reference, placed_at, placed_by, "
    "placed_seq, released_at, released_by, released_seq, release_reason"
)
Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Hold:
    id: str
    workspace_id: str | None
    scope_type: str
    scope_id: str
    reason: str
    reference: str | None
    placed_at: str
    placed_by: str
    placed_seq: int
    released_at: str | None = None
    released_by: str | None = None
    released_seq: int | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def describe(self) -> str:
        return f"hold {self.id} on {self.scope_type} {self.scope_id}"

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["active"] = self.active
        return out

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Hold:
        return cls(
            id=str(row[0]),
            workspace_id=row[1],
            scope_type=str(row[2]),
            scope_id=str(row[3]),
            reason=str(row[4]),
            reference=row[5],
            placed_at=str(row[6]),
            placed_by=str(row[7]),
            placed_seq=int(row[8]),
            released_at=row[9],
            released_by=row[10],
            released_seq=None if row[11] is None else int(row[11]),
            release_reason=row[12],
        )


@dataclass
class ActiveHolds:
    """A snapshot of what active holds cover, for filtering many entries quickly."""

    conversations: dict[str, str] = field(default_factory=dict)
    chatbots: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.conversations or self.chatbots or self.subjects)

    def covering(
        self,
        *,
        conversation_id: str | None,
        chatbot_id: str | None,
        subject_ref: str | None,
        actor_ref: Callable[[], str] | None = None,
    ) -> str | None:
        """The id of a hold covering an entry with these columns, or None."""
        if conversation_id is not None and conversation_id in self.conversations:
            return self.conversations[conversation_id]
        if chatbot_id is not None and chatbot_id in self.chatbots:
            return self.chatbots[chatbot_id]
        if self.subjects:
            if subject_ref is not None and subject_ref in self.subjects:
                return self.subjects[subject_ref]
            if actor_ref is not None:
                ref = actor_ref()
                if ref in self.subjects:
                    return self.subjects[ref]
        return None


def active_holds(query: Query) -> ActiveHolds:
    found = ActiveHolds()
    rows = query(
        "SELECT id, scope_type, scope_id FROM legal_holds WHERE released_at IS NULL "
        "ORDER BY placed_at, id",
        (),
    )
    for hold_id, scope_type, scope_id in rows:
        target = {
            "conversation": found.conversations,
            "chatbot": found.chatbots,
            "subject": found.subjects,
        }.get(str(scope_type))
        if target is not None:
            target.setdefault(str(scope_id), str(hold_id))
    return found


def hold_for_subject(query: Query, subject_ref: str) -> Hold | None:
    """The first active hold that blocks erasing this subject: one on the subject, on any of
    its conversations, or on any chatbot it talked to."""
    rows = query(
        f"SELECT {_COLUMNS} FROM legal_holds WHERE released_at IS NULL AND ("
        "(scope_type = 'subject' AND scope_id = ?) "
        "OR (scope_type = 'conversation' AND scope_id IN (SELECT conversation_id FROM "
        "ledger_entries WHERE subject = ? AND conversation_id IS NOT NULL)) "
        "OR (scope_type = 'chatbot' AND scope_id IN (SELECT chatbot_id FROM "
        "ledger_entries WHERE subject = ? AND chatbot_id IS NOT NULL))"
        ") ORDER BY placed_at, id LIMIT 1",
        (subject_ref, subject_ref, subject_ref),
    )
    return Hold.from_row(rows[0]) if rows else None


# -- wiring ---------------------------------------------------------------------------------


def make_hold_check(ledger: Ledger) -> HoldCheck:
    def check(ctx: WorkContext, subject: str) -> str | None:
        hold = hold_for_subject(ctx.txn.execute, ledger.subject_ref(subject))
        return hold.describe() if hold is not None else None

    check.chatledger_holds = True  # type: ignore[attr-defined]
    return check


def install_on_ledger(ledger: Ledger) -> None:
    """Make ``ledger.erase_subject`` refuse subjects under legal hold (idempotent)."""
    current = ledger.hold_check
    if current is not None and getattr(current, "chatledger_holds", False):
        return
    ours = make_hold_check(ledger)
    if current is None:
        ledger.hold_check = ours
        return
    previous = current

    def chained(ctx: WorkContext, subject: str) -> str | None:
        return ours(ctx, subject) or previous(ctx, subject)

    chained.chatledger_holds = True  # type: ignore[attr-defined]
    ledger.hold_check = chained


def install(platform: Platform) -> None:
    """Wire legal holds into a platform (call once from ``Platform.open``; idempotent)."""
    install_on_ledger(platform.ledger)


# -- placing, releasing, listing -----------------------------------------------------------


def _clean_text(value: Any, what: str, *, required: bool, limit: int = MAX_REASON) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{what} is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(f"{what} must be a string of at most {limit} characters")
    if any(ord(ch) < 0x20 and ch not in "\n\t" for ch in value):
        raise InvalidInput(f"{what} must not contain control characters")
    return value


def _target_attributes(ledger: Ledger, scope_type: str, target: str) -> dict[str, Any]:
    """Check that the target exists in the ledger; the ids to index the hold event under."""
    if scope_type == "conversation":
        rows = ledger.store.query(
            "SELECT chatbot_id FROM ledger_entries WHERE conversation_id = ? ORDER BY seq LIMIT 1",
            (target,),
        )
        if not rows:
            raise NotFound(f"no conversation {target} in the ledger")
        return {"conversation_id": target, "chatbot_id": rows[0][0]}
    if scope_type == "chatbot":
        rows = ledger.store.query(
            "SELECT seq FROM ledger_entries WHERE chatbot_id = ? ORDER BY seq LIMIT 1", (target,)
        )
        if not rows:
            raise NotFound(f"no chatbot {target} in the ledger")
        return {"chatbot_id": target}
    return {}


def place_hold(
    ledger: Ledger,
    actor: Actor,
    *,
    scope_type: str,
    target: str,
    reason: str,
    reference: str | None = None,
    workspace_id: str | None = None,
) -> Hold:
    """Place a legal hold; ``target`` is a conversation id, a user or visitor id, or a
    chatbot id. Returns the hold as stored."""
    if scope_type not in SCOPE_TYPES:
        raise InvalidInput(f"a hold is on one of: {', '.join(SCOPE_TYPES)}")
    if not isinstance(target, str) or not target or len(target) > 200:
        raise InvalidInput("the hold's target must be an id of at most 200 characters")
    reason_text = _clean_text(reason, "reason", required=True)
    ref_text = _clean_text(reference, "reference", required=False, limit=200)
    assert reason_text is not None
    extra = _target_attributes(ledger, scope_type, target)
    scope_id = ledger.subject_ref(target) if scope_type == "subject" else target
    hold_id = f"hold_{uuid.uuid4().hex[:16]}"
    placed_at = utc_timestamp()
    payload: dict[str, Any] = {"reason": reason_text}
    if ref_text:
        payload["reference"] = ref_text
    if scope_type == "subject":
        payload["subject"] = target

    def work(ctx: WorkContext) -> tuple[Hold, list[Event]]:
        hold = Hold(
            id=hold_id,
            workspace_id=workspace_id,
            scope_type=scope_type,
            scope_id=scope_id,
            reason=reason_text,
            reference=ref_text,
            placed_at=placed_at,
            placed_by=actor.id,
            placed_seq=ctx.next_seq,
        )
        ctx.txn.execute(
            f"INSERT INTO legal_holds ({_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)",
            (
                hold.id,
                workspace_id,
                scope_type,
                scope_id,
                reason_text,
                ref_text,
                placed_at,
                actor.id,
                hold.placed_seq,
            ),
        )
        attributes: dict[str, Any] = {
            "hold_id": hold_id,
            "scope_type": scope_type,
            "scope_id": scope_id,
            **extra,
        }
        if workspace_id:
            attributes["workspace_id"] = workspace_id
        event = Event(
            "privacy.hold_placed",
            actor,
            Entity("legal_hold", hold_id),
            subject=target if scope_type == "subject" else None,
            attributes=attributes,
            payload=payload,
        )
        return hold, [event]

    return ledger.transact(work)[0]


def release_hold(ledger: Ledger, actor: Actor, hold_id: str, reason: str) -> Hold:
    reason_text = _clean_text(reason, "reason", required=True)

    def work(ctx: WorkContext) -> tuple[Hold, list[Event]]:
        rows = ctx.txn.execute(f"SELECT {_COLUMNS} FROM legal_holds WHERE id = ?", (hold_id,))
        if not rows:
            raise NotFound(f"no legal hold {hold_id}")
        hold = Hold.from_row(rows[0])
        if not hold.active:
            raise Conflict(
                f"legal hold {hold_id} was already released at {hold.released_at}",
                details={"released_seq": hold.released_seq},
            )
        now = utc_timestamp()
        ctx.txn.execute(
            "UPDATE legal_holds SET released_at = ?, released_by = ?, released_seq = ?, "
            "release_reason = ? WHERE id = ? AND released_at IS NULL",
            (now, actor.id, ctx.next_seq, reason_text, hold_id),
        )
        released = replace(
            hold,
            released_at=now,
            released_by=actor.id,
            released_seq=ctx.next_seq,
            release_reason=reason_text,
        )
        attributes: dict[str, Any] = {
            "hold_id": hold_id,
            "scope_type": hold.scope_type,
            "scope_id": hold.scope_id,
            "placed_seq": hold.placed_seq,
        }
        if hold.scope_type == "conversation":
            attributes["conversation_id"] = hold.scope_id
        elif hold.scope_type == "chatbot":
            attributes["chatbot_id"] = hold.scope_id
        if hold.workspace_id:
            attributes["workspace_id"] = hold.workspace_id
        event = Event(
            "privacy.hold_released",
            actor,
            Entity("legal_hold", hold_id),
            attributes=attributes,
            payload={"reason": reason_text},
        )
        return released, [event]

    return ledger.transact(work)[0]


def get_hold(ledger: Ledger, hold_id: str) -> Hold:
    rows = ledger.store.query(f"SELECT {_COLUMNS} FROM legal_holds WHERE id = ?", (hold_id,))
    if not rows:
        raise NotFound(f"no legal hold {hold_id}")
    return Hold.from_row(rows[0])


def list_holds(
    ledger: Ledger,
    *,
    status: str = "active",
    workspace_id: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[Hold]:
    """Holds by placement time (``status``: active, released or all); ``after`` is the id of
    the last hold of the previous page."""
    if status not in ("active", "released", "all"):
        raise InvalidInput("status must be active, released or all")
    where: list[str] = []
    params: list[Any] = []
    if status == "active":
        where.append("released_at IS NULL")
    elif status == "released":
        where.append("released_at IS NOT NULL")
    if workspace_id is not None:
        where.append("(workspace_id = ? OR workspace_id IS NULL)")
        params.append(workspace_id)
    if after:
        anchor = ledger.store.query("SELECT placed_at FROM legal_holds WHERE id = ?", (after,))
        if not anchor:
            raise InvalidInput("invalid cursor")
        where.append("(placed_at > ? OR (placed_at = ? AND id > ?))")
        params += [anchor[0][0], anchor[0][0], after]
    sql = f"SELECT {_COLUMNS} FROM legal_holds"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY placed_at, id LIMIT ?"
    params.append(limit)
    return [Hold.from_row(row) for row in ledger.store.query(sql, params)]


def hold_subject(ledger: Ledger, hold: Hold) -> str | None:
    """The raw user or visitor id of a subject hold, read back from the hold's own event
    (None once that subject's content was erased)."""
    if hold.scope_type != "subject":
        return None
    record = ledger.read(hold.placed_seq)
    if record.payload is None:
        return None
    value = record.payload.get("subject")
    return str(value) if value is not None else None
