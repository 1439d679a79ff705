"""The `wsss` command line: parses arguments and calls `wsss.stages`; no logic lives here."""
