"""Prefect flows: the continual-training cycle and the flow that runs it for every pending batch."""
