"""Statistics over results: evaluation, aggregation, comparisons against a baseline."""
