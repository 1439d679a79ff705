"""Stages: each module exposes a typed `run(config) -> Result`; the CLI only builds the config."""
