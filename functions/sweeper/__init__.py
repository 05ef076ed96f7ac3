"""sweeper."""
