"""Thin Prefect tasks, one file per stage, each wrapping a `perennial.cycle` function."""
