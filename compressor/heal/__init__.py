"""Healing by knowledge distillation from the unpruned model (the `heal` stage's machinery)."""
