"""Identity: workspaces, users with argon2 passwords, API keys stored hashed, sessions.

Every change and every authentication outcome is a ledger event. Secrets never reach the
ledger: keys and session tokens are shown once and stored as SHA-256 digests (they are
high-entropy random strings, so a fast hash is the right tool), passwords as argon2id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chatledger.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from chatledger.events import Actor, Entity, Event, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission, Role
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import WorkContext

KEY_PREFIX = "clk_"
# One @, something on each side, a dot in the domain, and nothing invisible: no spaces, no
# control characters (a NUL in an address is stored, shown and compared as something else).
_EMAIL = re.compile(r"[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f.]+(?:\.[^\s@\x00-\x1f\x7f.]+)+")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
SESSION_PREFIX = "cls_"
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
TOKEN_USE_EVERY = 60.0  # seconds between two recorded uses of one key
_HASHER = PasswordHasher()
# Verifying against a dummy hash when the user does not exist keeps timing uniform.
_DUMMY_HASH = _HASHER.hash("not a real password")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime) -> str:
    return utc_timestamp(moment)


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def split_key_reference(value: str) -> tuple[str, str | None]:
    """The key id and, when the whole key was given, its secret.

    Accepts ``clk_<id>``, the bare ``<id>``, or the whole key ``clk_<id>_<secret>``. The
    error never repeats what was given: it may be a whole key, secret included.
    """
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith(KEY_PREFIX):
        text = text[len(KEY_PREFIX) :]
    key_id, sep, secret = text.partition("_")
    if not _KEY_ID.fullmatch(key_id):
        raise InvalidInput(
            "not an API key id: give clk_ and the 16 hex digits of the id, or the whole key"
        )
    if sep and not secret:
        raise InvalidInput(f"the API key {KEY_PREFIX}{key_id}_... has an empty secret")
    return key_id, secret if sep else None


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(
            f"unknown role {value!r}: use one of {', '.join(r.value for r in Role)}"
        ) from None


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    workspace_id: str
    role: str
    name: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Session:
    token: str
    csrf_token: str
    principal: Principal
    expires_at: str


class IdentityService:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._last_use: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- workspaces -----------------------------------------------------------------------

    def create_workspace(self, name: str, actor: Actor) -> str:
        workspace_id = f"ws_{uuid.uuid4().hex[:12]}"

        def work(ctx: WorkContext) -> tuple[str, list[Event]]:
            ctx.txn.execute(
                "INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)",
                (workspace_id, name, utc_timestamp()),
            )
            return workspace_id, [
                Event(
                    "workspace.create",
                    actor,
                    Entity("workspace", workspace_id),
                    attributes={"workspace_id": workspace_id, "name": name},
                )
            ]

        return self.ledger.transact(work)[0]

    def workspace(self, workspace_id: str) -> dict[str, Any]:
        """One workspace; :class:`NotFound` when there is none with this id."""
        rows = self.ledger.store.query(
            "SELECT id, name, created_at FROM workspaces WHERE id = ?", (workspace_id,)
        )
        if not rows:
            raise NotFound(f"no workspace {workspace_id!r}")
        return {"id": rows[0][0], "name": rows[0][1], "created_at": rows[0][2]}

    def workspaces(self) -> list[dict[str, Any]]:
        rows = self.ledger.store.query(
            "SELECT id, name, created_at FROM workspaces ORDER BY created_at"
        )
        return [{"id": r[0], "name": r[1], "created_at": r[2]} for r in rows]

    # -- API keys -------------------------------------------------------------------------

    def create_api_key(
        self,
        principal: Principal,
        *,
        role: str,
        name: str = "",
        workspace_id: str | None = None,
        expires_in_days: int | None = None,
    ) -> tuple[str, ApiKeyInfo]:
        """Create a key and return it once (only its digest is stored)."""
        require(principal, Permission.KEYS_MANAGE, "api_key", "new")
        chosen = _role(role)
        if chosen is Role.OWNER and principal.role is not Role.OWNER:
            raise Forbidden("only an owner can create owner keys")
        workspace = workspace_id or principal.workspace_id
        if workspace != principal.workspace_id and principal.via != "system":
            raise Forbidden("keys can only be created for your own workspace")
        if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
            raise InvalidInput("expires_in_days must be between 1 and 3650")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        token = f"{KEY_PREFIX}{key_id}_{secret}"
        now = _now()
        expires = _ts(now + timedelta(days=expires_in_days)) if expires_in_days else None
        info = ApiKeyInfo(
            key_id,
            workspace,
            chosen.value,
            name[:200],
            _ts(now),
            principal.actor.id,
            expires,
            None,
            None,
        )

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            exists = ctx.txn.execute("SELECT 1 FROM workspaces WHERE id = ?", (workspace,))
            if not exists:
                raise NotFound(f"no workspace {workspace}")
            ctx.txn.execute(
                "INSERT INTO api_keys (id, workspace_id, role, name, secret_hash, created_at, "
                "created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    workspace,
                    chosen.value,
                    info.name,
                    _digest(secret),
                    info.created_at,
                    principal.actor.id,
                    expires,
                ),
            )
            return None, [
                Event(
                    "apikey.create",
                    principal.actor,
                    Entity("api_key", key_id),
                    attributes={
                        "workspace_id": workspace,
                        "role": chosen.value,
                        "name": info.name,
                        "expires_at": expires,
                    },
                )
            ]

        self.ledger.transact(work)
        return token, info

    def revoke_api_key(self, principal: Principal, key: str) -> ApiKeyInfo:
        """Revoke a key named by its id (``clk_<id>`` or ``<id>``) or given whole
        (``clk_<id>_<secret>``: the secret must then be the key's). No message, event or
        error carries the secret."""
        key_id, secret = split_key_reference(key)
        require(principal, Permission.KEYS_MANAGE, "api_key", key_id)
        info = self.api_key(key_id)
        if info.workspace_id != principal.workspace_id and principal.via != "system":
            raise NotFound(f"no API key {KEY_PREFIX}{key_id}")
        if secret is not None:
            rows = self.ledger.store.query(
                "SELECT secret_hash FROM api_keys WHERE id = ?", (key_id,)
            )
            stored = str(rows[0][0]) if rows else ""
            if not hmac.compare_digest(stored, _digest(secret)):
                raise InvalidInput(
                    f"the secret given is not that of API key {KEY_PREFIX}{key_id}: "
                    "nothing was revoked"
                )
        if info.revoked_at:
            return info

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            ctx.txn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ?", (utc_timestamp(), key_id)
            )
            return None, [
                Event(
                    "apikey.revoke",
                    principal.actor,
                    Entity("api_key", key_id),
                    attributes={"workspace_id": info.workspace_id, "role": info.role},
                )
            ]

        self.ledger.transact(work)
        return self.api_key(key_id)

    def api_key(self, key_id: str) -> ApiKeyInfo:
        rows = self.ledger.store.query(
            "SELECT id, workspace_id, role, name, created_at, created_by, expires_at, revoked_at, "
            "last_used_at FROM api_keys WHERE id = ?",
            (key_id,),
        )
        if not rows:
            # what was asked for is repeated only when it is an id (never a whole key)
            shown = f" {KEY_PREFIX}{key_id}" if _KEY_ID.fullmatch(key_id) else ""
            raise NotFound(f"no API key{shown}")
        return ApiKeyInfo(*rows[0])

    def api_keys(self, principal: Principal) -> list[ApiKeyInfo]:
        require(principal, Permission.KEYS_MANAGE, "api_key", "*")
        rows = self.ledger.store.query(
            "SELECT id, workspace_id, role, name, created_at, created_by, expires_at, revoked_at, "
            "last_used_at FROM api_keys WHERE workspace_id = ? ORDER BY created_at",
            (principal.workspace_id,),
        )
        return [ApiKeyInfo(*r) for r in rows]

    def authenticate_key(self, token: str, *, ip: str | None = None) -> Principal:
        """The principal of an API key; a bad key is refused and recorded."""
        reason, key_id = self._check_key(token)
        if reason is not None:
            self._record_failure("api_key", reason, key_id, ip)
            raise Unauthenticated("invalid API key", details={"reason": reason})
        assert key_id is not None
        info = self.api_key(key_id)
        actor = Actor("api_key", key_id, info.role)
        principal = Principal(actor, info.workspace_id, Role(info.role), "api_key", key_id, ip)
        self._record_use(principal)
        return principal

    def valid_key_actor(self, token: str) -> Actor | None:
        """The actor of a valid API key, or None, found without recording anything (no use,
        no failure): who sent a request refused before authentication ran."""
        reason, key_id = self._check_key(token)  # a lookup and a SHA-256, no writes
        if reason is not None or key_id is None:
            return None
        return Actor("api_key", key_id, self.api_key(key_id).role)

    def _check_key(self, token: str) -> tuple[str | None, str | None]:
        if not token.startswith(KEY_PREFIX) or token.count("_") < 2:
            return "malformed", None
        key_id, _, secret = token[len(KEY_PREFIX) :].partition("_")
        if len(key_id) != 16 or not secret:
            return "malformed", None
        rows = self.ledger.store.query(
            "SELECT secret_hash, expires_at, revoked_at FROM api_keys WHERE id = ?", (key_id,)
        )
        if not rows:
            return "unknown_key", key_id
        secret_hash, expires_at, revoked_at = rows[0]
        if not hmac.compare_digest(secret_hash, _digest(secret)):
            return "wrong_secret", key_id
        if revoked_at:
            return "revoked", key_id
        if expires_at and _parse_ts(expires_at) <= _now():
            return "expired", key_id
        return None, key_id

    def _record_use(self, principal: Principal) -> None:
        key = principal.credential_id or ""
        now = time.monotonic()
        with self._lock:
            last = self._last_use.get(key)
            if last is not None and now - last < TOKEN_USE_EVERY:
                return
            self._last_use[key] = now

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            ctx.txn.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ?", (utc_timestamp(), key)
            )
            return None, [
                Event(
                    "auth.token_use",
                    principal.actor,
                    Entity("api_key", key),
                    attributes={"workspace_id": principal.workspace_id},
                    payload={"ip": principal.ip} if principal.ip else None,
                )
            ]

        self.ledger.transact(work)

    def _record_failure(
        self, method: str, reason: str, credential: str | None, ip: str | None
    ) -> None:
        self.ledger.append(
            Event(
                "auth.login_failed",
                self.ledger.anonymous_actor(ip),
                Entity(method, credential or "unknown"),
                Outcome.DENIED,
                attributes={"method": method, "reason": reason},
                payload={"ip": ip} if ip else None,
            )
        )

    # -- users, passwords, sessions ------------------------------------------------------

    def create_user(
        self,
        principal: Principal,
        *,
        email: str,
        password: str,
        role: str,
        workspace_id: str | None = None,
    ) -> str:
        require(principal, Permission.USERS_MANAGE, "user", email)
        chosen = _role(role)
        _owner_only(principal, chosen, None, "user", email)
        email = email.strip().lower() if isinstance(email, str) else ""
        if not _EMAIL.fullmatch(email) or len(email) > 254:
            raise InvalidInput("email is not a valid address")
        if len(password) < 12:
            raise InvalidInput("passwords must be at least 12 characters")
        workspace = workspace_id or principal.workspace_id
        user_id = f"usr_{uuid.uuid4().hex[:12]}"
        password_hash = _HASHER.hash(password)

        def work(ctx: WorkContext) -> tuple[str, list[Event]]:
            if ctx.txn.execute("SELECT 1 FROM users WHERE email = ?", (email,)):
                raise Conflict("a user with this email already exists")
            ctx.txn.execute(
                "INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (user_id, email, password_hash, utc_timestamp()),
            )
            ctx.txn.execute(
                "INSERT INTO memberships (user_id, workspace_id, role) VALUES (?, ?, ?)",
                (user_id, workspace, chosen.value),
            )
            return user_id, [
                Event(
                    "user.create",
                    principal.actor,
                    Entity("user", user_id),
                    subject=user_id,
                    attributes={"workspace_id": workspace, "role": chosen.value},
                    payload={"email": email},
                ),
                Event(
                    "membership.change",
                    principal.actor,
                    Entity("user", user_id),
                    attributes={"workspace_id": workspace, "before": None, "after": chosen.value},
                ),
            ]

        return self.ledger.transact(work)[0]

    def set_role(self, principal: Principal, user_id: str, role: str) -> None:
        require(principal, Permission.USERS_MANAGE, "user", user_id)
        chosen = _role(role)

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            rows = ctx.txn.execute(
                "SELECT role FROM memberships WHERE user_id = ? AND workspace_id = ?",
                (user_id, principal.workspace_id),
            )
            if not rows:
                raise NotFound(f"no user {user_id} in this workspace")
            before = rows[0][0]
            _owner_only(principal, chosen, before, "user", user_id)
            if before == Role.OWNER.value and chosen is not Role.OWNER:
                owners = ctx.txn.execute(
                    "SELECT COUNT(*) FROM memberships WHERE workspace_id = ? AND role = ?",
                    (principal.workspace_id, Role.OWNER.value),
                )
                if owners[0][0] <= 1:
                    raise Conflict("a workspace keeps at least one owner")
            ctx.txn.execute(
                "UPDATE memberships SET role = ? WHERE user_id = ? AND workspace_id = ?",
                (chosen.value, user_id, principal.workspace_id),
            )
            return None, [
                Event(
                    "user.role_change",
                    principal.actor,
                    Entity("user", user_id),
                    attributes={
                        "workspace_id": principal.workspace_id,
                        "before": before,
                        "after": chosen.value,
                    },
                )
            ]

        self.ledger.transact(work)

    def login(self, email: str, password: str, *, ip: str | None = None) -> Session:
        email = email.strip().lower()
        rows = self.ledger.store.query(
            "SELECT u.id, u.password_hash, u.disabled_at, u.locked_until, u.failed_logins, "
            "m.workspace_id, m.role FROM users u LEFT JOIN memberships m ON m.user_id = u.id "
            "WHERE u.email = ? ORDER BY m.workspace_id LIMIT 1",
            (email,),
        )
        if not rows:
            _verify(_DUMMY_HASH, password)
            self._record_failure("password", "unknown_user", None, ip)
            raise Unauthenticated("wrong email or password")
        user_id, password_hash, disabled_at, locked_until, failed, workspace, role = rows[0]
        if locked_until and _parse_ts(locked_until) > _now():
            self._record_failure("password", "locked_out", user_id, ip)
            raise Unauthenticated("too many failed logins: try again later")
        if disabled_at or workspace is None:
            self._record_failure("password", "disabled", user_id, ip)
            raise Unauthenticated("wrong email or password")
        if not _verify(password_hash, password):
            self._failed_password(user_id, int(failed) + 1, ip)
            raise Unauthenticated("wrong email or password")
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        expires = _ts(_now() + SESSION_LIFETIME)
        actor = Actor("user", user_id, role)
        principal = Principal(actor, workspace, Role(role), "session", user_id, ip)

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            ctx.txn.execute(
                "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?", (user_id,)
            )
            ctx.txn.execute(
                "INSERT INTO sessions (id, user_id, workspace_id, role, csrf_token, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_digest(token), user_id, workspace, role, csrf, utc_timestamp(), expires),
            )
            return None, [
                Event(
                    "auth.login",
                    actor,
                    Entity("user", user_id),
                    subject=user_id,
                    attributes={"workspace_id": workspace, "method": "password"},
                    payload={"ip": ip} if ip else None,
                )
            ]

        self.ledger.transact(work)
        return Session(token, csrf, principal, expires)

    def _failed_password(self, user_id: str, failures: int, ip: str | None) -> None:
        locked = failures >= MAX_FAILED_LOGINS
        until = _ts(_now() + LOCKOUT) if locked else None

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            ctx.txn.execute(
                "UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
                (0 if locked else failures, until, user_id),
            )
            events = [
                Event(
                    "auth.login_failed",
                    self.ledger.anonymous_actor(ip),
                    Entity("user", user_id),
                    Outcome.DENIED,
                    attributes={
                        "method": "password",
                        "reason": "wrong_password",
                        "failures": failures,
                    },
                    payload={"ip": ip} if ip else None,
                )
            ]
            if locked:
                events.append(
                    Event(
                        "auth.lockout",
                        Actor("system", "chatledger"),
                        Entity("user", user_id),
                        Outcome.BLOCKED,
                        attributes={"until": until, "failures": failures},
                        payload={"ip": ip} if ip else None,
                    )
                )
            return None, events

        self.ledger.transact(work)

    def authenticate_session(self, token: str, *, ip: str | None = None) -> Session:
        rows = self.ledger.store.query(
            "SELECT user_id, workspace_id, role, csrf_token, expires_at, revoked_at FROM sessions "
            "WHERE id = ?",
            (_digest(token),),
        )
        if not rows or rows[0][5] is not None:
            self._record_failure("session", "unknown_session" if not rows else "revoked", None, ip)
            raise Unauthenticated("not logged in")
        user_id, workspace, role, csrf, expires, _ = rows[0]
        if _parse_ts(expires) <= _now():
            self.ledger.append(
                Event(
                    "auth.session_expired",
                    Actor("user", user_id, role),
                    Entity("user", user_id),
                    Outcome.DENIED,
                    subject=user_id,
                    attributes={"workspace_id": workspace, "expired_at": expires},
                    payload={"ip": ip} if ip else None,
                )
            )
            raise Unauthenticated("the session has expired: log in again")
        principal = Principal(
            Actor("user", user_id, role), workspace, Role(role), "session", user_id, ip
        )
        return Session(token, csrf, principal, expires)

    def logout(self, session: Session) -> None:
        actor = session.principal.actor

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            ctx.txn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE id = ?",
                (utc_timestamp(), _digest(session.token)),
            )
            return None, [
                Event(
                    "auth.logout",
                    actor,
                    Entity("user", actor.id),
                    subject=actor.id,
                    attributes={"workspace_id": session.principal.workspace_id},
                )
            ]

        self.ledger.transact(work)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def same_workspace(
    principal: Principal, workspace_id: str, entity_type: str, entity_id: str
) -> None:
    """Refuse (403, recorded as access.denied) a thing of another workspace."""
    if workspace_id != principal.workspace_id:
        raise Forbidden(
            f"this {entity_type} belongs to another workspace",
            details={"entity_type": entity_type, "entity_id": entity_id, "reason": "workspace"},
        )


def _owner_only(
    principal: Principal, chosen: Role, before: str | None, entity_type: str, entity_id: str
) -> None:
    """Only an owner (or the operator's CLI) grants or takes away the owner role: otherwise an
    admin could make itself, or anyone, an owner."""
    if principal.via == "system" or principal.role is Role.OWNER:
        return
    if chosen is Role.OWNER or before == Role.OWNER.value:
        raise Forbidden(
            "only an owner can grant or remove the owner role",
            details={"permission": "owner", "entity_type": entity_type, "entity_id": entity_id},
        )


def require(principal: Principal, permission: Permission, entity_type: str, entity_id: str) -> None:
    """Raise Forbidden when the principal lacks ``permission`` (the API records the denial)."""
    if not principal.can(permission):
        raise Forbidden(
            f"the {principal.role.value} role may not do this ({permission.value})",
            details={
                "permission": permission.value,
                "entity_type": entity_type,
                "entity_id": entity_id,
            },
        )
