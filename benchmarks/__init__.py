"""Benchmarks behind `make bench`; not part of the installed package."""
