"""Who is calling: the authenticated principal every service call receives."""

from __future__ import annotations

from dataclasses import dataclass

from chatledger.events import Actor
from chatledger.identity.roles import Permission, Role, can


@dataclass(frozen=True)
class Principal:
    actor: Actor
    workspace_id: str
    role: Role
    via: str  # "api_key", "session", "widget" or "system"
    credential_id: str | None = None
    ip: str | None = None

    def can(self, permission: Permission) -> bool:
        return can(self.role, permission)


def system_principal(workspace_id: str) -> Principal:
    return Principal(Actor("system", "chatledger", "owner"), workspace_id, Role.OWNER, "system")
