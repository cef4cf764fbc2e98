"""The cycle's steps as plain functions; flows/ and tasks/ wrap them for Prefect."""
