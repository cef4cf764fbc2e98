"""Thin Prefect tasks, one file per stage, each wrapping a function of `perennial.pipeline`."""
