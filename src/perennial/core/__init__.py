"""The core every stage shares: settings, messages, files written whole, the workspace lock, secrets,
the process environment, start-up, fault points and arithmetic precision.
"""
