"""Billing: plans, each project's plan, the ledger and balances, payments, the daily charge."""
