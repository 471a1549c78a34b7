"""tfic against the serving frameworks its users would pick instead, on the same SavedModel (``bench.peers.run``)."""
