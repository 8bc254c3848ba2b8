"""Which ledger entries a workspace's users may see (the console's rule, also used by the
audit search API)."""

from __future__ import annotations

from dataclasses import dataclass

from chatledger.ledger.entry import Entry
from chatledger.ledger.service import Ledger


@dataclass(frozen=True)
class Scope:
    """Which entries a workspace's users may see: those of its chatbots, those naming the
    workspace, and those by or about its users and keys (all of them on a one-workspace
    deployment, where every entry is the workspace's)."""

    workspace_id: str
    chatbots: frozenset[str]
    people: frozenset[str]
    single: bool

    @classmethod
    def of(cls, ledger: Ledger, workspace_id: str) -> Scope:
        query = ledger.store.query
        bots = {
            str(r[0])
            for r in query("SELECT id FROM chatbots WHERE workspace_id = ?", (workspace_id,))
        }
        people = {
            str(r[0])
            for r in query(
                "SELECT user_id FROM memberships WHERE workspace_id = ?", (workspace_id,)
            )
        }
        people |= {
            str(r[0])
            for r in query("SELECT id FROM api_keys WHERE workspace_id = ?", (workspace_id,))
        }
        count = int(query("SELECT COUNT(*) FROM workspaces")[0][0])
        return cls(workspace_id, frozenset(bots), frozenset(people), count <= 1)

    def visible(self, entry: Entry, chatbot_id: str | None) -> bool:
        if chatbot_id:
            return chatbot_id in self.chatbots
        workspace = entry.attributes.get("workspace_id")
        if isinstance(workspace, str):
            return workspace == self.workspace_id
        if self.single:
            return True
        return bool({entry.actor.get("id"), entry.entity.get("id")} & self.people)
