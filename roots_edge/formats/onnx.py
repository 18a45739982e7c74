"""ONNX, as both sides read it: the file names of an artifact and the names of a graph's inputs and outputs,
which the exporters write and the ONNX Runtime backend binds (and checks at load, runtimes/contract.py). The
names are optimum's and onnxruntime-genai's, so their tools read our graphs and we read theirs."""
from __future__ import annotations

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx_data"       # external weights, written only past protobuf's 2 GB limit
GENAI_CONFIG = "genai_config.json"  # makes the folder an onnxruntime-genai model too

INPUT_IDS, ATTENTION_MASK, POSITION_IDS = "input_ids", "attention_mask", "position_ids"
TOKEN_TYPE_IDS = "token_type_ids"
LOGITS, LAST_HIDDEN_STATE = "logits", "last_hidden_state"
PAST_KEY, PAST_VALUE = "past_key_values.%d.key", "past_key_values.%d.value"      # (B, kv_heads, past, head_dim)
PRESENT_KEY, PRESENT_VALUE = "present.%d.key", "present.%d.value"                # (B, kv_heads, past+T, head_dim)


def decoder_names(num_layers: int) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a decoder graph, in order."""
    kv_in = [name % i for i in range(num_layers) for name in (PAST_KEY, PAST_VALUE)]
    kv_out = [name % i for i in range(num_layers) for name in (PRESENT_KEY, PRESENT_VALUE)]
    return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *kv_in], [LOGITS, *kv_out]
