"""Evaluation: scoring with `evaluate`, metric modules, significance, continual-learning metrics, the
champion's history, the gate, the label check and the retry rule.
"""
