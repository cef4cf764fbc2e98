"""The forgetting benchmark and its streams (the scripts that run benchmarks live in bench/)."""
