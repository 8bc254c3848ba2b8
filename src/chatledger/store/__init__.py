"""Storage backends behind one protocol (SQLite embedded; PostgreSQL for production)."""
