"""Who someone is: accounts, SSH keys, passwords, login sessions, session tokens, throttling."""
