"""NNCF compression of an `ov.Model`, one function per precision class, each returning what it applied.

    fp32 / fp16   no NNCF; fp16 halves the stored weights at save time (`compress_to_fp16`)
    int8          decoders: `nncf.compress_weights` INT8_ASYM (per-channel, data-free)
                  encoders: `nncf.quantize` post-training quantization (weights and activations),
                  calibrated on the calibration texts
    int4          `nncf.compress_weights` INT4 with groups of `group_size` input channels and `ratio` of the
                  layers in 4 bits (the rest, the embeddings and the output layer in INT8_ASYM, or everything
                  in 4 bits with `all_layers`); AWQ and scale estimation run on calibration activations
"""
from __future__ import annotations

import logging
import math
from collections import Counter

from roots_edge.core.errors import DataError, TargetError
from roots_edge.core.telemetry import decline

# On the default model (group 64) INT4_ASYM gave mean KL 2.3e-3 vs INT4_SYM's 2.4-2.5e-3, for 1% more bytes
INT4_MODE = "INT4_ASYM"
MIN_GROUP = 16            # smaller groups cost more in scales than they gain in accuracy
SUBSET = 128              # calibration items NNCF reads at most (its own default subset size)


def int4_group_size(spec, requested: int) -> tuple[int, str | None]:
    """The group size to use and, when it differs from the requested one, why.

    Groups run along a weight's input channels, so they must divide every width a 4-bit MatMul reduces:
    hidden (q, k, v, gate, up), heads x head_dim (o) and intermediate (down). A size that does not is
    replaced by its largest divisor of all of them (recorded in the manifest); -1 means per-channel.
    """
    if requested == -1:
        return -1, None
    if requested <= 0:
        raise TargetError(f"group size {requested} is invalid: give a positive size (e.g. 32, 64, 128) "
                          "or -1 for one scale per output channel")
    widths = sorted({spec.hidden_size, spec.intermediate_size, spec.num_heads * spec.head_dim})
    common = math.gcd(*widths)
    if common % requested == 0:
        return requested, None
    chosen = max(d for d in range(1, min(requested, common) + 1) if common % d == 0)
    if chosen < MIN_GROUP:
        raise TargetError(f"int4 group size {requested} does not divide the model's widths {widths}, and their "
                          f"largest common divisor below it is {chosen}. Pass --group-size -1 (per channel) or a "
                          f"divisor of {common}.")
    return chosen, (f"requested group size {requested} does not divide the model's widths {widths}; "
                    f"used {chosen}, their largest common divisor not above it")


def _quiet_nncf():
    decline()                 # before NNCF is imported: it starts its telemetry at import
    import nncf

    nncf.set_log_level(logging.ERROR)
    return nncf


def compress_int8_weights(ov_model):
    nncf = _quiet_nncf()
    model = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    return model, {"method": "nncf.compress_weights", "mode": "INT8_ASYM", "granularity": "per-channel"}


def quantize_int8(ov_model, items: list[dict]):
    """Post-training quantization of weights and activations (encoders)."""
    if not items:
        raise DataError("int8 post-training quantization needs calibration text; give --calibration FILE")
    nncf = _quiet_nncf()
    items = items[:SUBSET]
    model = nncf.quantize(ov_model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                          preset=nncf.QuantizationPreset.MIXED, subset_size=len(items))
    return model, {"method": "nncf.quantize", "model_type": "TRANSFORMER", "preset": "MIXED",
                   "calibration_items": len(items)}


def compress_int4(ov_model, quant, items: list[dict]):
    """4-bit weight compression by the resolved `quant` (group size, ratio, data-aware methods; embeddings and
    the output layer in INT8_ASYM unless the config puts them in 4 bits too)."""
    nncf = _quiet_nncf()
    methods = quant.methods()
    awq, scale_est, gptq = "awq" in methods, "scale-estimation" in methods, "gptq" in methods
    if (awq or scale_est or gptq) and not items:
        raise DataError("AWQ, scale estimation and GPTQ need calibration text; give --calibration FILE or --method rtn")
    used = items[:SUBSET] if awq or scale_est or gptq else []
    all_layers = quant.precision_of("embeddings") == "int4"
    model = nncf.compress_weights(
        ov_model, mode=getattr(nncf.CompressWeightsMode, INT4_MODE), group_size=quant.group_size, ratio=quant.ratio,
        dataset=nncf.Dataset(used) if used else None, awq=awq, scale_estimation=scale_est, gptq=gptq,
        subset_size=len(used) or SUBSET, all_layers=all_layers)
    return model, {"method": "nncf.compress_weights", "mode": INT4_MODE, "group_size": quant.group_size,
                   "ratio": quant.ratio, "awq": awq, "scale_estimation": scale_est, "gptq": gptq,
                   "backup_mode": "INT8_ASYM",
                   "all_layers": all_layers, "calibration_items": len(used)}


def weight_element_counts(ov_model) -> dict[str, int]:
    """Elements stored per element type across the model's constants (u4/i4, u8/i8, f16, f32, ...)."""
    counts: Counter[str] = Counter()
    for op in ov_model.get_ops():
        if op.get_type_name() == "Constant":
            shape = op.get_output_shape(0)
            counts[op.get_output_element_type(0).get_type_name()] += math.prod(shape) if len(shape) else 1
    return dict(counts)
