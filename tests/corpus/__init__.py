"""Input corpora shared by the test tiers (the bad-audio corpus)."""
