"""The SSH front end: asyncssh server, authentication, one Textual app per PTY session.

server     listener, authentication, live-session registry, revocation watcher, shutdown
session    one SSH channel: the dashboard (PTY) or the command interface (no PTY)
driver     the Textual driver over an SSH channel, and the guards for hosting apps in-process
hostkeys   the persistent ed25519 host key
sftp       SFTP and scp over the one upload path

The `ghst` command that starts the server lives in the `cli` package.
"""
