"""eval/metrics."""
