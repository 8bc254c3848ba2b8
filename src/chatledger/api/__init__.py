"""The HTTP API (FastAPI): routes, authentication, the one JSON error shape."""
