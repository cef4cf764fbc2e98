"""The stages of one continual-training cycle as plain functions: intake (ingest, recovery,
validation, split), train_step, evaluate_step and decide_step (gate, promotion).

Each stage takes the settings and small values (batch ids, run ids, paths, metric dicts) and returns
small values; state lives in the ledger, the data store and MLflow. tasks/ wraps them one to one for
Prefect, and tests call them directly.
"""
