"""GGUF conversions without a llama.cpp build.

- `requantize_f32`: an F32 re-encoding of a quantized GGUF (what `llama-quantize
  --allow-requantize ... F32` makes), with the `gguf` package's own dequantisers, the ones
  transformers uses to load GGUFs. Served F32 weights then match the hf backend's fp32 weights
  exactly, so the two backends differ only in kernels.
"""

from __future__ import annotations

from pathlib import Path

from selfteach.errors import SelfteachError


def requantize_f32(src: Path, dst: Path) -> Path:
    """Write `dst`: `src` with every tensor dequantised to F32, all metadata copied."""
    import gguf
    import numpy as np

    try:
        reader = gguf.GGUFReader(str(src))
    except (ValueError, OSError) as e:
        raise SelfteachError(f"{src}: not a readable GGUF ({str(e).splitlines()[0] if str(e) else e})") from None
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
        writer.add_tensor_info(t.name, data.shape, np.float32, data.nbytes, gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in tensors:
        writer.write_tensor_data(data)
    writer.close()
    return dst


def to_gguf(model_dir: Path, quant: str = "Q8_0") -> Path:
    """A GGUF of a transformers model directory (placeholder until the converter lands)."""
    raise SelfteachError(f"{model_dir}: converting a model directory to GGUF is not available yet")
