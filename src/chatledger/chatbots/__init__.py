"""Chatbots and their versioned, audited configuration."""
