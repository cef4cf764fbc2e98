"""The stages of one continual-training cycle as plain functions: intake (ingest, recovery,
validation, split), train_step, evaluate_step and decide_step (gate, promotion).

Each stage takes the settings, a batch id and the records of the stages before it
(perennial.evaluation.contracts: Challenger, Scores, Decision, Outcome) and returns its own; state
lives in the ledger, the data store and MLflow. tasks/ wraps them one to one for Prefect, and tests
call them directly.
"""
