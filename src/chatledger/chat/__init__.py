"""Conversations, messages, answers, feedback, resolution and outcomes; replay."""
