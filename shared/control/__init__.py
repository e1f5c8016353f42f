"""Control-plane state: a projection of the compacted control topic."""
