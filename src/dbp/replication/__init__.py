"""Replication: the repository's change feed (this piece of issue 6); backup pull, restore and failover come later."""
