"""The registry: MLflow runs and model versions, the `champion` alias with its history, and retention
of model copies.
"""
