"""Models on disk and in memory: loading a saved model, the device it runs on, batched prediction."""
