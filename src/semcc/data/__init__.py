"""semcc.data."""
