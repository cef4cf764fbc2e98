"""Prefect deployments: training on a schedule, on new data and on drift; the drift monitor."""
