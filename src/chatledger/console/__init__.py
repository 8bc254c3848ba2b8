"""The web console and the embeddable chat widget (server-rendered)."""
