"""Byte-level BPE tokenizers trained with `tokenizers`, wrapped for transformers.

Byte-level with the GPT-2 split regex: llama.cpp reproduces it exactly (`tokenizer.ggml.pre = gpt-2`),
so a GGUF export tokenizes as Hugging Face does.
"""
from __future__ import annotations

from typing import Iterable

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = [BOS, EOS, PAD]  # ids 0, 1, 2


def train_bpe(docs: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """Train a byte-level BPE on `docs`; returns a `tokenizers.Tokenizer` that prepends BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, bos)])
    return tok


def to_transformers(tok, context_length: int):
    """Wrap a trained `tokenizers.Tokenizer` as a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=context_length, clean_up_tokenization_spaces=False)
