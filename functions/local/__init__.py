"""Local tooling: the moto-backed stack (harness), `make demo`, `make serve`, `make smoke`."""
