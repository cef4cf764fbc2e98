"""Thin Prefect tasks, one file per stage, each wrapping a `perennial.pipeline.cycle_steps` function."""
