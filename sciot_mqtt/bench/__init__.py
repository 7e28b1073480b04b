"""Benchmarks: commands that print and save JSON (and PNG plots), with the machine described."""
