"""Models: families, where a base comes from, building technique chains into the cache, loading."""
