"""In-process API tests (a package, so its module names cannot collide with tests/e2e)."""
