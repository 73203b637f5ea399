"""Commands over SSH without a dashboard: `ssh panel <noun> <verb> [args] [--json]`.

One argument parser (`parser`), one output layer (`output`), the exit codes (`exit_codes`),
and one module per noun under `nouns/`. `dispatch.run_command` runs one command line for an
actor; the SSH server (sshd/commands_channel.py) hands it the channel's streams. Nothing here
writes to the process's stdout or exits the process: many sessions share one event loop.
"""
