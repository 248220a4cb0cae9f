"""The benchmark study: run bookkeeping and statistics, the regime map, the sequential design."""
