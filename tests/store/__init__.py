"""Contract tests of the store protocol, run against every store kind."""
