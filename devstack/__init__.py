"""Development tooling, never deployed: the moto-backed local stack, demo, serve and smoke."""
