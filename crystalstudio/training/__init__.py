"""Training: on-the-fly datasets, trainers, checkpoints, metrics logs, torchrun support (no Qt)."""
