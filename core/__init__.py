"""ghst core: domain logic usable headless. Imports neither textual nor asyncssh."""
