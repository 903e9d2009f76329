"""Example datasets and contracts that the demos and the docs build on."""
