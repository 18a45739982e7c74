"""Chat templates: carried from the model folder into every artifact, rendered as transformers renders them,
applied by `model.chat` on every backend without torch, and clear errors for what cannot be chatted with."""
import shutil

import pytest
from click.testing import CliRunner

from roots_edge.cli import main
from roots_edge.core.errors import GenerationError
from roots_edge.exporters import export, load_source
from roots_edge.runtimes import load
from roots_edge.runtimes.chat import check_messages, folder_template, render

# turns marked by the tokenizer's own specials: the tiny vocabulary has no <|im_end|>, so EOS ends a turn
TEMPLATE = ("{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
            "{% if add_generation_prompt %}{{ bos_token }}assistant:{% endif %}")
MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Return the number of"}]


def test_render_matches_transformers(tiny_llama, tmp_path):
    from roots_edge.data.folder import load_hf_tokenizer

    folder = shutil.copytree(tiny_llama, tmp_path / "m")
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    hf = load_hf_tokenizer(folder)
    ours = render(folder_template(folder), MESSAGES, bos_token=hf.bos_token, eos_token=hf.eos_token)
    assert ours == hf.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert ours.endswith("<s>assistant:")


def test_template_from_tokenizer_config_list_form(tmp_path):
    import json

    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}))
    assert folder_template(tmp_path) == "D"
    assert folder_template(tmp_path / "missing") is None


def test_bad_messages_say_what_is_wrong():
    with pytest.raises(GenerationError, match="role 'robot'; roles are system, user, assistant, tool"):
        check_messages([{"role": "robot", "content": "hi"}])
    with pytest.raises(GenerationError, match="non-empty list"):
        check_messages([])
    with pytest.raises(GenerationError, match="content must be text"):
        check_messages([{"role": "user", "content": 3}])
    assert check_messages("hi") == [{"role": "user", "content": "hi"}]
    with pytest.raises(GenerationError, match="refused the messages: no system"):
        render("{{ raise_exception('no system') }}", [{"role": "user", "content": "x"}])


@pytest.fixture(scope="module")
def chat_artifacts(tiny_llama, texts_jsonl, tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    folder = shutil.copytree(tiny_llama, root / "model")
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    src = load_source(folder, calibration=texts_jsonl)
    made = {t: root / t for t in ("gguf-f32", "onnx-fp32", "openvino-fp32")}
    for t, out in made.items():
        export(src, t, out, log=lambda *_: None)
    return folder, made


def test_every_artifact_carries_the_template_and_chats_alike(chat_artifacts):
    from gguf import GGUFReader

    folder, made = chat_artifacts
    gguf_file = next(made["gguf-f32"].glob("*.gguf"))
    assert GGUFReader(gguf_file).fields["tokenizer.chat_template"].contents() == TEMPLATE
    assert (made["onnx-fp32"] / "chat_template.jinja").read_text() == TEMPLATE
    models = {"torch": load(folder, device="cpu", exact=True)} | {
        t: load(p, device="cpu", exact=True) for t, p in made.items()}
    replies = {n: m.chat(MESSAGES, 12) for n, m in models.items()}
    assert len(set(replies.values())) == 1 and replies["torch"].strip(), replies
    facts = {n: m.backend.chat_facts() for n, m in models.items()}
    assert {(f.bos, f.eos, f.bos_id) for f in facts.values()} == {("<s>", "</s>", facts["torch"].bos_id)}
    streamed = "".join(models["onnx-fp32"].chat(MESSAGES, 12, stream=True))
    assert streamed == replies["onnx-fp32"]
    from roots_edge import LanguageModel

    assert LanguageModel.from_pretrained(folder).chat(MESSAGES, 12) == replies["torch"]


def test_no_template_is_a_clear_error_and_the_cli_falls_back(tiny_llama, chat_artifacts, tmp_path):
    from roots_edge.exporters import export as run_export

    plain = tmp_path / "plain"
    run_export(load_source(tiny_llama), "onnx-fp32", plain, log=lambda *_: None)
    with pytest.raises(GenerationError, match="has no chat template.*chat_template=TEXT.*--chat-template"):
        load(plain, device="cpu").chat("hi")
    r = CliRunner().invoke(main, ["chat", str(plain), "-n", "4"], input="Return the\n\n")
    assert r.exit_code == 0 and "plain text (it has no chat template" in r.output
    template = tmp_path / "t.jinja"
    template.write_text(TEMPLATE)
    r = CliRunner().invoke(main, ["chat", str(plain), "-n", "4", "--chat-template", str(template), "--system", "Be brief."],
                           input="Return the\nAnd then\n\n")
    assert r.exit_code == 0 and "through its chat template" in r.output and r.output.count("model> ") == 2
