"""Schema revisions, oldest first by their numbers."""
