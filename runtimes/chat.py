"""Chat templates: the model's own, wherever it travels, rendered the way Hugging Face renders it.

A template comes from the artifact itself: a GGUF file's `tokenizer.chat_template`, a Hugging Face folder's
`chat_template.jinja` or `tokenizer_config.json` (`chat_template`, a string or a list of named ones), which
every exporter copies beside the model. It is rendered with Jinja2 in a sandbox, with the variables
transformers passes (`messages`, `bos_token`, `eos_token`, `add_generation_prompt`). A reply ends at the
model's end-of-sequence ids or at one of the end-of-turn tokens its vocabulary holds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from roots_edge.core.errors import GenerationError
from roots_edge.core.text import check_unicode

ROLES = ("system", "user", "assistant", "tool")
# end-of-turn markers of the template conventions in use (ChatML, Gemma, Llama 3, Phi); those in a model's
# vocabulary stop a reply together with its EOS ids
END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")
TEMPLATE_FILE = "chat_template.jinja"


@dataclass(frozen=True)
class ChatFacts:
    """What rendering and stopping a reply need from a model."""

    template: str | None
    bos: str = ""                    # the BOS token's text, the template's `bos_token`
    eos: str = ""
    bos_id: int | None = None
    stop_ids: frozenset[int] = frozenset()   # EOS ids and the end-of-turn tokens the vocabulary holds


def tokenizer_facts(tok, template: str | None, bos_id: int | None, eos_ids: set[int]) -> ChatFacts:
    """ChatFacts from a `tokenizers.Tokenizer` (ONNX, OpenVINO and PyTorch backends)."""
    def text(i):
        return (tok.id_to_token(i) or "") if i is not None else ""

    turns = {tok.token_to_id(s) for s in END_OF_TURN} - {None}
    return ChatFacts(template, text(bos_id), text(min(eos_ids)) if eos_ids else "", bos_id,
                     frozenset(turns | set(eos_ids)))


def folder_template(folder: Path) -> str | None:
    """The chat template a Hugging Face-style folder carries, or None."""
    folder = Path(folder)
    if (folder / TEMPLATE_FILE).is_file():
        return (folder / TEMPLATE_FILE).read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    except json.JSONDecodeError:
        return None
    if isinstance(template, list):   # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) and template.strip() else None


def check_messages(messages) -> list[dict]:
    """[{"role", "content"}] with known roles and text content, or a GenerationError that says what is wrong
    (a TextInputError for content that is not valid Unicode, as for any text)."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or not messages:
        raise GenerationError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise GenerationError(f"message {i} must be a dict with 'role' and 'content'; got {m!r:.80}")
        if m["role"] not in ROLES:
            raise GenerationError(f"message {i} has role {m['role']!r}; roles are {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise GenerationError(f"message {i}'s content must be text; got {type(m['content']).__name__}")
        check_unicode(m["content"], f"message {i}'s content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def render(template: str, messages: list[dict], *, bos_token: str = "", eos_token: str = "",
           add_generation_prompt: bool = True) -> str:
    """The prompt text of `messages` under `template` (Jinja2, sandboxed, as transformers configures it)."""
    from datetime import datetime

    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise GenerationError(f"the chat template refused the messages: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent,
                                                                                  ensure_ascii=ensure_ascii)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(template).render(messages=messages, bos_token=bos_token, eos_token=eos_token,
                                                add_generation_prompt=add_generation_prompt)
    except jinja2.TemplateError as exc:
        raise GenerationError(f"the chat template could not be rendered: {exc}") from None


def no_template_error(path) -> GenerationError:
    return GenerationError(
        f"{path} has no chat template (none in the GGUF header, chat_template.jinja or tokenizer_config.json), "
        "so it cannot tell turns apart. Pass one: model.chat(messages, chat_template=TEXT) or "
        "`roots-edge chat ... --chat-template FILE.jinja`; or use generate() for plain continuation.")
