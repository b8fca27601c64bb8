"""Loading a VLM for the yes-token verifier, by concern: the answer tokens, an image-only processor (no
video processor, so no torchvision), safetensors-only weights, which modules stay in full precision under
bitsandbytes, and default devices and dtypes. :class:`rd_inference.yes_token.YesTokenVerifier` uses these;
nothing here scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

YES_WORDS = ("Yes", "yes", " Yes", " yes")
NO_WORDS = ("No", "no", " No", " no")
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


# --------------------------------------------------------------------------------------------- tokens
def answer_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """Ids of the ``words`` that encode to exactly one token (not the unknown token), deduplicated.

    ``add_special_tokens=False`` matters: with it on, some tokenizers put BOS first and ``encode(w)[0]``
    silently reads the BOS probability.
    """
    ids: list[int] = []
    unk = getattr(tokenizer, "unk_token_id", None)
    for word in words:
        enc = tokenizer.encode(word, add_special_tokens=False)
        if len(enc) == 1 and enc[0] != unk and enc[0] not in ids:
            ids.append(enc[0])
    return ids


def _yes_no_ids(tokenizer: Any, source: str) -> tuple[list[int], list[int]]:
    yes, no = answer_token_ids(tokenizer, YES_WORDS), answer_token_ids(tokenizer, NO_WORDS)
    for label, ids, words in (("yes", yes, YES_WORDS), ("no", no, NO_WORDS)):
        if not ids:
            raise ValueError(
                f"{source}: none of {list(words)} is a single token in this model's tokenizer, so its "
                f"'{label}' probability cannot be read in one forward pass; use a VLM whose tokenizer has "
                "yes/no as single tokens (Qwen-VL, InternVL, LLaVA, Idefics3, Gemma 3 all do)"
            )
    if set(yes) & set(no):
        raise ValueError(
            f"{source}: the tokenizer maps yes and no to the same token id(s) {set(yes) & set(no)}"
        )
    return yes, no


# ------------------------------------------------------------------------------------------ processor
_IMAGE_ONLY_CLASSES: dict[type, type] = {}


def _image_only_class(base: type) -> type:
    """``base`` without its video sub-processor (which needs torchvision in transformers 5.x).

    The processor classes take ``video_processor`` as an optional ``__init__`` argument but insist on one
    through ``get_attributes()``; dropping it there lets ``from_pretrained`` build the image processor and
    tokenizer alone. Image calls never touch the video processor.
    """
    if base not in _IMAGE_ONLY_CLASSES:

        @classmethod
        def get_attributes(cls):
            return [a for a in base.get_attributes() if "video" not in a]

        _IMAGE_ONLY_CLASSES[base] = type(
            f"ImageOnly{base.__name__}", (base,), {"get_attributes": get_attributes}
        )
    return _IMAGE_ONLY_CLASSES[base]


def load_image_processor(path_or_id: str, *, trust_remote_code: bool = False) -> Any:
    """The model's processor for images and text only: never builds a video processor.

    Processor classes with a video sub-processor (Qwen2.5-VL, Qwen3-VL, InternVL, SmolVLM) are loaded
    through an image-only subclass, on every machine (with torchvision or without), so preprocessing does
    not depend on what is installed; the others load as ``AutoProcessor`` would.
    """
    from transformers import AutoConfig, AutoProcessor
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES, processor_class_from_name

    config = AutoConfig.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    name = PROCESSOR_MAPPING_NAMES.get(config.model_type)
    cls = processor_class_from_name(name) if isinstance(name, str) else None
    if cls is None:  # remote-code or unmapped model: its own processor, as published
        return AutoProcessor.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    if any("video" in attribute for attribute in cls.get_attributes()):
        cls = _image_only_class(cls)
    return cls.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)


# ---------------------------------------------------------------------------------------------- loading
def _check_safetensors(path_or_id: str) -> None:
    path = Path(path_or_id)
    if not path.is_dir():
        return  # a hub id: from_pretrained(use_safetensors=True) refuses pickle weights itself
    if any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json")):
        return
    pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in path.glob(pattern))
    if pickles:
        raise ValueError(
            f"{path} has only pickle weights ({', '.join(pickles)}); pickle files can run code when loaded, so "
            "this verifier loads safetensors only. Convert once in a trusted environment: "
            "model.save_pretrained(dir, safe_serialization=True)"
        )
    raise FileNotFoundError(f"{path}: no model weights (*.safetensors) found")


def full_precision_skip_modules(config: Any, *, keep_vision: bool = True) -> list[str]:
    """Module prefixes that bitsandbytes must leave unquantized: the output head and, with ``keep_vision``,
    every sibling of the language model (vision tower, projector/connector).

    Asks the model's own structure (an empty skeleton on the meta device), so the names are right for any
    family: e.g. ``model.visual`` for Qwen-VL, ``model.vision_tower`` + ``model.multi_modal_projector`` for
    LLaVA/InternVL/Gemma 3, ``model.vision_model`` + ``model.connector`` for Idefics3.
    """
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(config)
    names = {module: name for name, module in skeleton.named_modules()}
    skip = []
    head = skeleton.get_output_embeddings()
    if head is not None:
        skip.append(names[head])
    if keep_vision:
        decoder = skeleton.get_decoder()
        if decoder is skeleton or decoder not in names:
            raise ValueError(f"cannot find the language model inside {type(skeleton).__name__}")
        parent_name = names[decoder].rpartition(".")[0]
        parent = skeleton.get_submodule(parent_name) if parent_name else skeleton
        for child_name, child in parent.named_children():
            if child is not decoder and any(True for _ in child.parameters()):
                skip.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    return skip


def _weight_bytes(config: Any, dtype: torch.dtype) -> int:
    """Bytes of the model's weights in ``dtype`` (from a meta skeleton: nothing is allocated)."""
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(config)
    size = torch.tensor([], dtype=dtype).element_size()
    return sum(p.numel() for p in skeleton.parameters()) * size


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _as_dtype(dtype: torch.dtype | str | None, device: str) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype.removeprefix("torch."), None)
        if isinstance(value, torch.dtype):
            return value
        raise ValueError(f"unknown dtype {dtype!r}")
    return dtype


def load_vlm(path_or_id: str, *, quantization: str | None, dtype: torch.dtype | str | None, device: torch.device,
             device_map: str | dict | None, trust_remote_code: bool, quantize_vision: bool, offload: bool,
             attn_implementation: str | None, compile: bool):
    """``AutoModelForImageTextToText`` (safetensors only, optionally bitsandbytes 8/4-bit with the output
    head and, unless ``quantize_vision``, the vision tower in full precision) and its image-only processor.
    Returns (model, processor, the settings to record, full-precision weight bytes or None)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    torch_dtype = _as_dtype(dtype, str(device))
    _check_safetensors(path_or_id)
    config = AutoConfig.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    home = torch.device("cpu") if offload else device
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype,
        "use_safetensors": True,
        "trust_remote_code": trust_remote_code,
    }
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    memory = {}
    if quantization is not None:
        from transformers import BitsAndBytesConfig

        skip = full_precision_skip_modules(config, keep_vision=not quantize_vision)
        if quantization == "4bit":
            qconfig = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch_dtype,
                llm_int8_skip_modules=skip,
            )
        else:
            qconfig = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
        kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = device_map if device_map is not None else {"": str(home)}
        memory["full_precision_bytes"] = _weight_bytes(config, torch_dtype)
    elif device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForImageTextToText.from_pretrained(path_or_id, **kwargs).eval()
    if quantization is None and device_map is None:
        model.to(home)
    if compile:
        model.compile()
    processor = load_image_processor(path_or_id, trust_remote_code=trust_remote_code)
    settings = {
        "quantization": quantization,
        "dtype": str(torch_dtype).removeprefix("torch."),
        "trust_remote_code": trust_remote_code,
        "quantize_vision": quantize_vision,
        "device": str(device),
        "device_map": device_map,
        "offload": offload,
        "attn_implementation": attn_implementation,
        "compile": compile,
    }
    return model, processor, settings, memory.get("full_precision_bytes")
