"""Learning: fine-tuning, strategies, replay, regularisers, tuning (full, LoRA, head), data-parallel
jobs and what finishes a trained model.
"""
