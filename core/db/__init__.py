"""PostgreSQL: the connection pool and the forward-only migrations."""
