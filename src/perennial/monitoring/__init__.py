"""Monitoring: drift tests, the drift check, and watching the inbox."""
