"""Long-running evidence: seeded crash campaigns (`make crash`; a short run is part of `make test`)."""
