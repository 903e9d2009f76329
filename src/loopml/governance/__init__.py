"""Governance: identity, ownership and the audit chain."""
