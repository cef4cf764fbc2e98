"""Reporting: the HTML report, model cards, Data Docs, plots, `perennial status` and what one cycle
did.
"""
