"""Pipelines: a compression recipe is a list of typed steps (finetune, prune, distill, export, bench)."""
