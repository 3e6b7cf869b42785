"""semcc.tasks."""
