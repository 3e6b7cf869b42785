"""semcc.metrics."""
