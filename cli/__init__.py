"""The `ghst` command on the server: serve, worker, migrate and the operators' user commands."""
