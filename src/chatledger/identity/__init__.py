"""Users, roles, API keys, sessions and the permission each action needs."""
