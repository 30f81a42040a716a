"""Phasing: PhAI network, input tensors, recycling scan, charge flipping, solution ranking (no Qt)."""
