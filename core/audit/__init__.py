"""The audit log: who did what, from where, with what outcome (`entries` owns the table)."""
