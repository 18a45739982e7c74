"""Data: model folders in and out, corpora and labeled sets, the built-in data names, tokenizers."""
