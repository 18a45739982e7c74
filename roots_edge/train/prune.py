"""Structured pruning: a smaller dense model of the same family, ranked on calibration text (Minitron-style).

    small = prune_model(model, tokenizer, spec, PruneConfig(heads=0.5, kv_heads=0.5, ffn=0.5, layers=2, hidden=0.5),
                        texts)

Every axis removes whole rows and columns, the same number in every layer, so the result is an ordinary
Hugging Face model (`config.json` says its new widths) that every exporter and runtime takes unchanged.

Criteria, all from one pass over the calibration text (activations, no gradients, no labels):
- **attention heads** and **FFN channels**: the expected squared contribution of the unit to its block's output,
  E[x_j^2] * ||W_out[:, j]||^2 summed over the unit's input channels j of the output projection (`o_proj`,
  `down_proj`; BERT's `attention.output.dense`, `output.dense`). Minitron ranks by activation alone; weighting by
  the outgoing column also counts a unit whose activation is large but whose output weights are near zero as
  unimportant, and it is what removing that one unit costs the residual stream (up to cross-terms).
  With grouped-query attention a key/value group scores the sum of its query heads; the kept groups keep
  their best query heads, the same number in each group.
- **hidden (embedding) channels**, decoders: E[x_c^2] of the normalised residual stream entering every
  projection (both norms of every layer and the final norm), summed: Minitron's LayerNorm-activation criterion.
- **layers**: block importance, 1 - mean cosine between a layer's input and output hidden states (ShortGPT /
  Minitron's depth criterion): a layer that barely turns the residual stream is the cheapest to drop. One pass,
  and it needs neither labels nor an LM head, so encoders rank the same way.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from roots_edge.core.config import FRACTION, POSITIVE, check, option
from roots_edge.core.errors import DataError, RecipeError, UnsupportedModelError

MAX_CALIBRATION_TEXTS = 256   # encoders: texts (one forward each, up to 256 tokens)
CRITERIA = {
    "heads": "E[x^2] * ||W_o[:, j]||^2 over the head's channels of the attention output projection",
    "ffn": "E[x^2] * ||W_down[:, j]||^2 of the channel's FFN output projection input",
    "hidden": "sum over all norm outputs of E[x_c^2] (Minitron)",
    "layers": "block importance: 1 - mean cos(layer input, layer output)",
}


@dataclass
class PruneConfig:
    """Fractions to keep (1.0: keep all) and, for layers, a count or the indices to keep."""

    heads: float = option(1.0, within=FRACTION)     # query heads (decoders: as many in every kept key/value group)
    kv_heads: float = option(1.0, within=FRACTION)  # key/value groups of grouped-query attention (decoders)
    ffn: float = option(1.0, within=FRACTION)       # FFN (intermediate) channels
    layers: int | list[int] | None = option(None, within=POSITIVE, what="how many layers to keep (a model needs at least "
                                            "one layer) or a list of distinct layer indices")   # how many (the most important) or which
    hidden: float = option(1.0, within=FRACTION)    # embedding / residual channels (decoders)
    multiple_of: int = option(1, within=POSITIVE)   # round FFN and hidden widths down to a multiple (256: K-quants)

    def relations(self, where: str) -> None:
        if isinstance(self.layers, list) and (not self.layers or len(set(self.layers)) != len(self.layers)):
            raise RecipeError(f"{where}: layers = {self.layers}: give distinct layer indices, at least one "
                              "(a model needs at least one layer)")

    @property
    def is_identity(self) -> bool:
        return (self.heads == self.kv_heads == self.ffn == self.hidden == 1.0 and self.layers is None
                and self.multiple_of == 1)


def parse_layers(value: str | None) -> int | list[int] | None:
    """`--layers 4` (keep four) or `--layers 0,1,5` (keep these)."""
    if value is None or value == "":
        return None
    try:
        if "," in value:
            return [int(v) for v in value.split(",") if v.strip()]
        return int(value)
    except ValueError:
        raise RecipeError(f"--layers {value!r}: give a count (4) or comma-separated layer indices (0,1,5)") from None


# ---------------------------------------------------------------------------------------------- the plan

@dataclass
class Plan:
    """What is kept, as indices into the original model."""

    layers: list[int]
    hidden: list[int]
    kv_groups: list[list[int]]    # per kept layer: kept key/value groups (decoders; BERT: heads)
    heads: list[list[int]]        # per kept layer: kept query heads, grouped by kept group in order
    ffn: list[list[int]]          # per kept layer: kept FFN channels
    scores: dict = field(default_factory=dict)

    def summary(self, spec) -> dict:
        return {"layers": {"kept": self.layers, "of": spec.num_layers},
                "hidden": {"kept": len(self.hidden), "of": spec.hidden_size},
                "heads": {"kept": len(self.heads[0]), "of": spec.num_heads,
                          "per_layer": self.heads},
                "kv_heads": {"kept": len(self.kv_groups[0]), "of": spec.num_kv_heads,
                             "per_layer": self.kv_groups},
                "ffn": {"kept": len(self.ffn[0]), "of": spec.intermediate_size}}


def _count(n: int, fraction: float, multiple: int = 1, what: str = "") -> int:
    """round(n * fraction), at least 1; when that removes anything, rounded down to a multiple of `multiple`."""
    keep = max(1, int(round(n * fraction)))
    if multiple > 1 and keep < n:
        if n < multiple:
            raise RecipeError(f"--multiple-of {multiple} is larger than the {what} width {n}; give a smaller "
                              "multiple or keep the whole width")
        keep = max(multiple, keep // multiple * multiple)
    return min(n, keep)


def _top(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest scores, in their original order (ties keep the lower index)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return sorted(int(i) for i in order)


def _widths(spec, cfg: PruneConfig) -> tuple[int, int, int, int, int]:
    """(layers, kv groups, query heads, ffn, hidden) to keep, or a clear error for a prune the model cannot take."""
    check(cfg, "prune")
    traits = spec.traits
    if not spec.is_decoder:
        if cfg.heads != 1.0 or cfg.kv_heads != 1.0:
            raise UnsupportedModelError(
                f"{spec.family}: transformers derives the head size from hidden_size / num_attention_heads, so "
                "removing heads cannot be written as a dense config. Prune --ffn and --layers instead.")
        if cfg.hidden != 1.0:
            raise UnsupportedModelError(f"{spec.family}: --hidden is for decoders (RMSNorm); an encoder's "
                                        "LayerNorm recentres over the width. Prune --ffn and --layers instead.")
    if cfg.hidden != 1.0 and traits.embed_scale:
        raise UnsupportedModelError(f"{spec.family} scales embeddings by sqrt(hidden_size): pruning the hidden "
                                    "width changes that scale. Prune heads, FFN and layers instead.")
    if isinstance(cfg.layers, list):
        bad = [i for i in cfg.layers if not 0 <= i < spec.num_layers]
        if bad:
            raise RecipeError(f"--layers {cfg.layers}: the model has layers 0..{spec.num_layers - 1}; "
                              f"{bad} do not exist")
        n_layers = len(cfg.layers)
    else:
        n_layers = spec.num_layers if cfg.layers is None else cfg.layers
        if n_layers > spec.num_layers:
            raise RecipeError(f"--layers {n_layers}: the model has only {spec.num_layers} layers")
    groups = spec.num_kv_heads
    kv = _count(groups, cfg.kv_heads)
    heads = max(1, int(round(spec.num_heads * cfg.heads)))
    if heads < kv:
        raise RecipeError(f"keeping {heads} of {spec.num_heads} query heads leaves fewer heads than the {kv} "
                          f"key/value groups kept; every group needs a query head. Raise --heads or lower --kv-heads.")
    if heads % kv:
        raise RecipeError(f"keeping {heads} query heads in {kv} key/value groups: grouped-query attention needs "
                          f"the same number in each group. Choose --heads so that the count is a multiple of {kv} "
                          f"(e.g. {kv * max(1, heads // kv) / spec.num_heads:.3g}).")
    if heads // kv > spec.num_heads // groups:
        raise RecipeError(f"keeping {heads} query heads in {kv} of {groups} key/value groups needs {heads // kv} per "
                          f"group, but each group has {spec.num_heads // groups}. Keep more --kv-heads.")
    ffn = _count(spec.intermediate_size, cfg.ffn, cfg.multiple_of, "FFN")
    hidden = _count(spec.hidden_size, cfg.hidden, cfg.multiple_of, "hidden")
    return n_layers, kv, heads, ffn, hidden


# ---------------------------------------------------------------------------------------------- measuring

def _parts(model, spec):
    """(layers list, per-layer {role: module}, body) for the families roots-edge prunes."""
    if spec.is_decoder:
        body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        layers = list(body.layers)
        roles = [{"q": l.self_attn.q_proj, "o": l.self_attn.o_proj, "gate": l.mlp.gate_proj,
                  "down": l.mlp.down_proj} for l in layers]
        return layers, roles, body
    body = model.bert if hasattr(model, "bert") else model
    layers = list(body.encoder.layer)
    roles = [{"q": l.attention.self.query, "o": l.attention.output.dense, "gate": l.intermediate.dense,
              "down": l.output.dense} for l in layers]
    return layers, roles, body


def _calibration_inputs(tokenizer, spec, texts: list[str]) -> list:
    import torch

    if spec.is_decoder:
        from roots_edge.exporters.imatrix import CHUNK, calibration_chunks

        # up to 32k tokens, as pruning has always read (the exporters' default budget is smaller)
        chunks, _ = calibration_chunks(tokenizer, spec, texts, max_tokens=64 * CHUNK)
        return [{"input_ids": torch.tensor([c])} for c in chunks]
    from roots_edge.exporters.calibration import encoder_items

    items = encoder_items(tokenizer, spec, texts[:MAX_CALIBRATION_TEXTS])
    if not items:
        raise DataError("no calibration text: give a --calibration FILE with some paragraphs of text")
    return [{k: torch.from_numpy(v) for k, v in item.items()} for item in items]


def measure(model, tokenizer, spec, texts: list[str], progress: bool = True) -> dict:
    """Per layer: mean squared input of the attention and FFN output projections (per channel), of the
    projections that read the normalised residual stream, and the block importance. {name: np.ndarray}."""
    import torch

    from roots_edge.data.activations import Activations

    layers, roles, body = _parts(model, spec)
    inputs = _calibration_inputs(tokenizer, spec, texts)
    n = len(layers)
    cos_sum, tokens = np.zeros(n), 0

    def block(i):
        def hook(_m, args, kwargs, out):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = out[0] if isinstance(out, tuple) else out
            cos_sum[i] += float(torch.nn.functional.cosine_similarity(h_in.double(), h_out.double(), dim=-1).sum())
        return hook

    def forward(item):
        nonlocal tokens
        body(**item, use_cache=False) if spec.is_decoder else body(**item)
        tokens += int(item["input_ids"].numel())

    roles_measured = ("o", "down", "q", "gate")
    with Activations(lambda x: (x.double() * x.double()).sum(0)) as acts:
        for i, (layer, role) in enumerate(zip(layers, roles)):
            for key in roles_measured:
                acts.inputs((key, i), role[key])
            acts.hook(layer, block(i))
        if spec.is_decoder:
            acts.outputs("final_norm", body.norm)
        acts.run(forward, inputs, desc="measuring", progress=progress)
    out = {key: [acts.mean((key, i)).numpy() for i in range(n)] for key in roles_measured}
    out["block_importance"] = 1.0 - cos_sum / tokens
    if spec.is_decoder:
        out["final_norm"] = acts.mean("final_norm").numpy()
    out["tokens"] = tokens
    out["texts"] = len(inputs)
    return out


def plan(model, spec, cfg: PruneConfig, stats: dict | None) -> Plan:
    """Which layers, groups, heads and channels to keep, from `stats` (None: an identity prune needs none)."""
    n_layers, kv, heads, ffn, hidden = _widths(spec, cfg)
    L, G, H, F, D, hd = (spec.num_layers, spec.num_kv_heads, spec.num_heads, spec.intermediate_size,
                         spec.hidden_size, spec.head_dim)
    if stats is None:
        return Plan(list(range(L)), list(range(D)), [list(range(G))] * L, [list(range(H))] * L,
                    [list(range(F))] * L)
    _, roles, _ = _parts(model, spec)
    scores: dict = {}
    if isinstance(cfg.layers, list):
        keep_layers = sorted(cfg.layers)
    else:
        keep_layers = _top(stats["block_importance"], n_layers)
    scores["block_importance"] = [round(float(v), 5) for v in stats["block_importance"]]
    # hidden channels: the normalised residual stream entering attention and FFN of every kept layer, and the head
    if spec.is_decoder:
        energy = stats["final_norm"] + sum(stats["q"][i] + stats["gate"][i] for i in keep_layers)
    else:
        energy = np.ones(D)
    keep_hidden = _top(np.asarray(energy), hidden)
    per_group = heads // kv
    kv_groups, q_heads, channels = [], [], []
    for i in keep_layers:
        w_o = roles[i]["o"].weight.detach().double().numpy()                  # (D, H * hd)
        contrib = stats["o"][i] * (w_o * w_o).sum(0)                          # (H * hd,)
        head_score = contrib.reshape(H, hd).sum(1)                            # (H,)
        group_score = head_score.reshape(G, H // G).sum(1)                    # (G,)
        groups = _top(group_score, kv)
        kv_groups.append(groups)
        q_heads.append([g * (H // G) + j for g in groups
                        for j in _top(head_score.reshape(G, H // G)[g], per_group)])
        w_down = roles[i]["down"].weight.detach().double().numpy()            # (D, F)
        channels.append(_top(stats["down"][i] * (w_down * w_down).sum(0), ffn))
    return Plan(keep_layers, keep_hidden, kv_groups, q_heads, channels, scores)


# ---------------------------------------------------------------------------------------------- applying

_DECODER_LAYER = re.compile(r"^(.*?\blayers)\.(\d+)\.(.+)$")
_ENCODER_LAYER = re.compile(r"^(.*?\bencoder\.layer)\.(\d+)\.(.+)$")


def _slice(name: str, t, plan: Plan, layer: int | None, spec):
    """The kept part of one tensor of the original model's state dict."""
    import torch

    hid = torch.tensor(plan.hidden)
    hd = spec.head_dim
    if layer is None:
        if t.dim() >= 1 and spec.is_decoder and t.shape[-1] == spec.hidden_size and (
                "embed_tokens" in name or "lm_head" in name or "score" in name or name.endswith("norm.weight")):
            return t.index_select(t.dim() - 1, hid)
        return t
    k = plan.layers.index(layer)
    rows_q = torch.tensor([h * hd + j for h in plan.heads[k] for j in range(hd)])
    rows_kv = torch.tensor([g * hd + j for g in plan.kv_groups[k] for j in range(hd)])
    ffn = torch.tensor(plan.ffn[k])
    if spec.is_decoder:
        if re.search(r"\bself_attn\.q_proj\.", name):
            t = t.index_select(0, rows_q)
        elif re.search(r"\bself_attn\.[kv]_proj\.", name):
            t = t.index_select(0, rows_kv)
        elif re.search(r"\bself_attn\.o_proj\.weight", name):
            return t.index_select(1, rows_q).index_select(0, hid)
        elif re.search(r"\bmlp\.(gate|up)_proj\.", name):
            t = t.index_select(0, ffn)
        elif re.search(r"\bmlp\.down_proj\.weight", name):
            return t.index_select(1, ffn).index_select(0, hid)
        if name.endswith("_proj.weight"):
            return t.index_select(1, hid)
        if name.endswith("layernorm.weight") or name.endswith("layernorm.bias"):
            return t.index_select(0, hid)
        if "o_proj.bias" in name or "down_proj.bias" in name:
            return t.index_select(0, hid)
        return t                                                  # q_norm / k_norm: per head_dim
    if re.search(r"\bintermediate\.dense\.", name):
        return t.index_select(0, ffn)
    if name.endswith("output.dense.weight") and ".attention." not in name:
        return t.index_select(1, ffn)
    return t


def apply_plan(model, spec, p: Plan):
    """A new model of the same class with only the kept rows and columns: weights copied exactly."""
    import torch

    cfg = model.config.__class__.from_dict(model.config.to_dict())
    cfg.num_hidden_layers = len(p.layers)
    cfg.intermediate_size = len(p.ffn[0])
    if spec.is_decoder:
        cfg.hidden_size = len(p.hidden)
        cfg.num_attention_heads = len(p.heads[0])
        cfg.num_key_value_heads = len(p.kv_groups[0])
        cfg.head_dim = spec.head_dim
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = [cfg.layer_types[i] for i in p.layers]
    pattern = _DECODER_LAYER if spec.is_decoder else _ENCODER_LAYER
    state = {}
    for name, t in model.state_dict().items():
        m = pattern.match(name)
        if m:
            layer = int(m.group(2))
            if layer not in p.layers:
                continue
            state[f"{m.group(1)}.{p.layers.index(layer)}.{m.group(3)}"] = _slice(name, t, p, layer, spec).clone()
        else:
            state[name] = _slice(name, t, p, None, spec).clone()
    torch.manual_seed(0)
    new = model.__class__(cfg)
    new.load_state_dict(state, strict=True)
    if getattr(cfg, "tie_word_embeddings", False) and hasattr(new, "tie_weights"):
        new.tie_weights()
    if hasattr(new, "generation_config") and hasattr(model, "generation_config"):
        new.generation_config = model.generation_config
    new.eval()
    return new


def prune_model(model, tokenizer, spec, cfg: PruneConfig, texts: list[str] | None, *, progress: bool = True):
    """(pruned model, provenance record). `texts` is the calibration text (None only for an identity prune)."""
    n_layers, kv, heads, ffn, hidden = _widths(spec, cfg)
    identity = (n_layers, kv, heads, ffn, hidden) == (spec.num_layers, spec.num_kv_heads, spec.num_heads,
                                                      spec.intermediate_size, spec.hidden_size) \
        and not isinstance(cfg.layers, list)
    stats = None if identity else measure(model, tokenizer, spec, list(texts or []), progress=progress)
    p = plan(model, spec, cfg, stats)
    new = apply_plan(model, spec, p)
    before = sum(t.numel() for t in model.parameters())
    after = sum(t.numel() for t in new.parameters())
    record = {"kind": "pruned", "config": asdict(cfg), "criteria": CRITERIA,
              "calibration": {"texts": stats["texts"], "tokens": stats["tokens"]} if stats else None,
              "kept": p.summary(spec), "scores": p.scores,
              "parameters": {"before": before, "after": after, "kept": round(after / before, 4)}}
    return new, record


def pruned_record(parent: dict, parent_path, provenance: dict) -> dict:
    """The record of a pruned model: its parent's (recipe, data), what was removed, and one more history entry.
    The parent's metrics are dropped: they do not describe the pruned model."""
    source = str(parent_path) if parent_path else None
    record = {k: v for k, v in parent.items() if k != "metrics"}
    record.update(kind="pruned", pruned={"from": source, **provenance})
    record["history"] = [*parent.get("history", []), {"kind": "prune", "from": source,
                                                      "parameters": provenance["parameters"]}]
    return record
