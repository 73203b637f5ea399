"""Every bound a tenant's compose file is held to: its size, its expanded size and depth, its
`extends` chain, the services that start, and the sizes the panel fills in (tmpfs, nofile).
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB
MAX_COMPOSE_BYTES = 1 * MiB
MAX_ENV_FILE_BYTES = 256 * KiB
# Anchors let a small file stand for a huge tree ("billion laughs"): the expanded tree is bounded.
MAX_NODES = 100_000
MAX_DEPTH = 64
# Characters of the expanded tree: an alias repeats a long string, `$VAR` a long variable.
MAX_EXPANDED_CHARS = 8 * MiB
MAX_EXTENDS = 8  # `extends` steps from one service
MAX_SERVICES = 10  # services that start (the setting GHST_COMPOSE_MAX_SERVICES)
DEFAULT_TMPFS = 64 * MiB  # the size of a tmpfs that names none, at most a quarter of the memory
MAX_NOFILE = 1_048_576  # the kernel's default nr_open
