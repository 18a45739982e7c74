"""Training on PyTorch: the one fit() loop, pretraining recipes, classifier finetuning, distillation,
structured pruning, held-out evaluation."""
