"""Use cases over small storage interfaces: the write path, materialization, reconciliation."""
