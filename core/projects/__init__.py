"""Projects (a name that becomes <name>.<domain>, owned by one user), their env vars and cache."""
