"""semcc.models."""
