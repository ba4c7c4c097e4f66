"""Hugging Face model folders: config.json + model.safetensors (or a sharded index).

Also reads and writes slmkit's own quantised folders, which are HF folders whose config.json has
a `quantization_config` with quant_method "slmkit" naming each tensor's block format.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint, ModelConfig, Tensor
from ..errors import ModelFormatError, UnsupportedModelError
from .atomic import atomic_output_dir
from .safetensors_io import DTYPES, SafetensorsFile, save_safetensors

# architectures entry -> what differs from plain Llama
ARCHITECTURES = {
    "LlamaForCausalLM": {},
    "MistralForCausalLM": {},
    "Qwen2ForCausalLM": {"attention_bias": True},
}
QUANT_METHOD = "slmkit"
SINGLE_FILE_TOKENIZERS = ("tokenizer.bin", "tokenizer.gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                   "special_tokens_map.json", "generation_config.json")


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def read_config(folder: Path) -> tuple[ModelConfig, dict]:
    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: cannot parse config.json ({e})") from None
    archs = raw.get("architectures") or []
    arch = archs[0] if archs else None
    if arch not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path}: architecture {arch!r} is not supported; slmkit runs {', '.join(ARCHITECTURES)}")
    d = dict(raw)
    d.update(ARCHITECTURES[arch])
    if "attention_bias" in raw:
        d["attention_bias"] = raw["attention_bias"]
    d["architecture"] = arch
    d.setdefault("num_key_value_heads", raw.get("num_attention_heads"))
    d["rope_interleaved"] = bool(raw.get("slmkit", {}).get("rope_interleaved", False))
    scaling = raw.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        raise UnsupportedModelError(f"{path}: rope_scaling {scaling} is not supported yet")
    try:
        return ModelConfig.from_dict(d), raw
    except TypeError as e:
        raise ModelFormatError(f"{path}: incomplete config.json ({e})") from None


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise ModelFormatError(f"{index}: corrupt index ({e})") from None
        files = sorted({folder / f for f in weight_map.values()})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ModelFormatError(f"{index}: shard(s) missing: {', '.join(missing)}")
        return files
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise ModelFormatError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def read_hf(folder) -> Checkpoint:
    folder = Path(folder)
    config, raw = read_config(folder)
    qconfig = raw.get("quantization_config")
    stored = {}
    if qconfig is not None and qconfig.get("quant_method") in OTHER_QUANT_READERS:
        tensors = _read_other_quantized(folder, qconfig)
        if config.tie_word_embeddings:
            tensors.pop("lm_head.weight", None)
        return Checkpoint(config=config, tensors=tensors, source=str(folder),
                          tokenizer=_tokenizer_source(folder), quantization={"converted_from": qconfig})
    if qconfig is not None:
        if qconfig.get("quant_method") != QUANT_METHOD:
            raise UnsupportedModelError(
                f"{folder}: quantization_config.quant_method {qconfig.get('quant_method')!r} is not "
                f"supported (slmkit reads its own {QUANT_METHOD!r} folders and "
                f"{', '.join(OTHER_QUANT_READERS)})")
        stored = qconfig.get("tensors", {})
    tensors: dict[str, Tensor] = {}
    for path in _safetensors_files(folder):
        st = SafetensorsFile(path)
        for name in st.keys():
            data = st.get(name)
            if name in stored:
                wtype, shape = stored[name]["type"], stored[name]["shape"]
            else:
                wtype = DTYPES[st.dtype(name)][1]
                shape = data.shape
                if wtype is None:
                    raise ModelFormatError(f"{path}: tensor {name!r} has dtype {st.dtype(name)}, "
                                           f"expected a float type")
            tensors[name] = Tensor(name, shape, wtype, data)
    if config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    return Checkpoint(config=config, tensors=tensors, source=str(folder),
                      tokenizer=_tokenizer_source(folder), quantization=qconfig)


# quant_method of other tools' quantised folders -> (module in slmkit.formats, reader function)
OTHER_QUANT_READERS = {
    "gptq": ("gptq_awq", "read_gptq_awq"),
    "awq": ("gptq_awq", "read_gptq_awq"),
    "compressed-tensors": ("compressed_tensors", "read_compressed_tensors"),
}


def _read_other_quantized(folder: Path, qconfig: dict) -> dict[str, Tensor]:
    import importlib
    module, function = OTHER_QUANT_READERS[qconfig["quant_method"]]
    reader = getattr(importlib.import_module(f".{module}", __package__), function)
    return reader(_safetensors_files(folder), qconfig, folder)


def _tokenizer_source(folder: Path) -> Path:
    """The folder, unless its only tokenizer is a single file (a llama2.c tokenizer.bin or a
    vocabulary-only tokenizer.gguf, as slmkit writes for models read from those formats)."""
    if not any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer.model")):
        for name in SINGLE_FILE_TOKENIZERS:
            if (folder / name).is_file():
                return folder / name
    return folder


def write_hf_config(cfg: ModelConfig, torch_dtype: str = "float32") -> dict:
    """config.json contents (without quantization_config) for a model config."""
    config = {
        "architectures": [cfg.architecture],
        "model_type": {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                       "Qwen2ForCausalLM": "qwen2"}[cfg.architecture],
        "torch_dtype": torch_dtype,
    }
    config.update({k: v for k, v in cfg.to_dict().items()
                   if k not in ("architecture", "rope_interleaved") and v is not None})
    config["slmkit"] = {"rope_interleaved": cfg.rope_interleaved}
    return config


def write_hf(ckpt: Checkpoint, out_dir, tokenizer_from=None) -> Path:
    """Write ckpt as an HF-layout folder; block-format tensors are stored as uint8 rows and
    described in config.json's quantization_config. The folder appears whole or not at all."""
    out_dir = Path(out_dir)
    config = write_hf_config(ckpt.config)
    arrays, described = {}, {}
    for name, t in ckpt.tensors.items():
        if t.wtype not in ("f32", "f16"):  # blocks as uint8 rows, bf16 as uint16 bits
            described[name] = {"type": t.wtype, "shape": list(t.shape)}
        arrays[name] = np.ascontiguousarray(t.data)
    if described or ckpt.quantization:
        qc = dict(ckpt.quantization or {})
        qc["quant_method"] = QUANT_METHOD
        qc["format_version"] = 1
        qc["tensors"] = described
        config["quantization_config"] = qc
    with atomic_output_dir(out_dir) as tmp:
        save_safetensors(arrays, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        src = tokenizer_from if tokenizer_from is not None else ckpt.tokenizer
        _copy_tokenizer_files(src, tmp)
    return out_dir


def _copy_tokenizer_files(src, dst: Path) -> None:
    if src is None or not isinstance(src, (str, Path)):
        return
    src = Path(src)
    if src.is_dir():
        for name in TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, dst / name)
    elif src.is_file() and src.suffix == ".bin":   # llama2.c tokenizer
        shutil.copy2(src, dst / "tokenizer.bin")
    elif src.is_file() and src.suffix == ".gguf":  # the vocabulary of a GGUF model, without weights
        from .gguf_write import write_gguf_vocab
        write_gguf_vocab(src, dst / "tokenizer.gguf")
