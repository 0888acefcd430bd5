"""Prices, usage ledger, budgets and rollups (see the metering issue)."""
