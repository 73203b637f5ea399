"""The operators' app: k9s-like list views over every account (tui/admin/base.py), shown from
an admin's or operator's dashboard (`a`) and by `ghst admin` on the host."""
