"""Serving: the real-time endpoint, micro-batching, hot swap, canary and shadow, batch scoring."""
