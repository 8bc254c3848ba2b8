"""Roles and the permissions they grant. Nothing grants editing or deleting audit data:
no such permission exists."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    AUDITOR = "auditor"
    AGENT = "agent"
    VIEWER = "viewer"


class Permission(StrEnum):
    CHATBOT_READ = "chatbot.read"
    CHATBOT_WRITE = "chatbot.write"
    DOCUMENT_READ = "document.read"
    DOCUMENT_WRITE = "document.write"
    CHAT = "chat"
    CONVERSATION_READ = "conversation.read"
    CONVERSATION_MANAGE = "conversation.manage"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    PRIVACY_MANAGE = "privacy.manage"
    USERS_MANAGE = "users.manage"
    KEYS_MANAGE = "keys.manage"
    ANALYTICS_READ = "analytics.read"


_P = Permission
_EVERYTHING = frozenset(Permission)
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: _EVERYTHING,
    Role.ADMIN: _EVERYTHING,
    Role.EDITOR: frozenset(
        {
            _P.CHATBOT_READ,
            _P.CHATBOT_WRITE,
            _P.DOCUMENT_READ,
            _P.DOCUMENT_WRITE,
            _P.CHAT,
            _P.ANALYTICS_READ,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            _P.CHATBOT_READ,
            _P.DOCUMENT_READ,
            _P.CONVERSATION_READ,
            _P.AUDIT_READ,
            _P.AUDIT_EXPORT,
            _P.ANALYTICS_READ,
        }
    ),
    Role.AGENT: frozenset({_P.CHATBOT_READ, _P.CHAT, _P.CONVERSATION_READ, _P.CONVERSATION_MANAGE}),
    Role.VIEWER: frozenset({_P.CHATBOT_READ, _P.DOCUMENT_READ, _P.ANALYTICS_READ}),
}


def can(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
