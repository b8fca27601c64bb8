"""Checks of what a user passes in, run before any model loads or any work starts.

Each check raises :class:`UserError` with one line that names the setting and the fix; every face shows
that line as it is (exit 2 in the CLI, ``gr.Error`` in the demo, a node error in ComfyUI).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path

SEED_RANGE = (0, 2**64 - 1)  # what torch.Generator.manual_seed takes without wrapping or overflowing
MAX_SIDE = 16384  # pixels: beyond every supported model's sizes; larger only fails allocating the latents


class UserError(ValueError):
    """An input the user can fix. Its message is one line saying what is wrong and what to do."""


class NonFiniteError(UserError, FloatingPointError):
    """The model or the verifier produced NaN/inf: usually the dtype, the guidance scale or the weights."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_prompt(prompt, what: str = "prompt") -> str:
    if not isinstance(prompt, str):
        raise UserError(f"the {what} must be text (str), got {type(prompt).__name__} {prompt!r}")
    if not prompt.strip():
        raise UserError(f"the {what} is empty: pass a text describing the image")
    return prompt


def check_negative_prompt(negative_prompt) -> str | None:
    """``None`` or text (an empty one is a valid negative prompt)."""
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise UserError(f"the negative prompt must be text (str) or None, got {type(negative_prompt).__name__} "
                        f"{negative_prompt!r}")
    return negative_prompt


def check_count(name: str, value, what: str, minimum: int = 1) -> int | None:
    """A whole number of at least ``minimum``; ``None`` means the default."""
    if value is None:
        return None
    if not _is_int(value) or value < minimum:
        raise UserError(f"{name} ({what}) must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_setting(strategy: str, name: str, value, default) -> None:
    """A strategy setting has its default's kind: a whole number, a finite number, a list of finite
    numbers, true/false or text (ranges are the strategy's own ``validate``)."""
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = _is_int(value), "a whole number"
    elif isinstance(default, float):
        ok, kind = _is_finite(value), "a finite number"
    elif isinstance(default, tuple):
        ok = isinstance(value, (tuple, list)) and all(_is_finite(v) for v in value)
        kind = "a list of finite numbers (e.g. 0.3,0.6)"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "text"
    else:
        return
    if not ok:
        raise UserError(f"strategy {strategy!r}: {name} must be {kind}, got {value!r}")


def check_seed(seed) -> int:
    if not _is_int(seed):
        raise UserError(f"seed must be a whole number from {SEED_RANGE[0]} to 2**64-1, got {seed!r}")
    if not SEED_RANGE[0] <= int(seed) <= SEED_RANGE[1]:
        raise UserError(f"seed {seed} is outside the generator's range: use a whole number from 0 to 2**64-1")
    return int(seed)


def check_steps(steps) -> int | None:
    """``None`` means the model's default; anything else must be a whole number of at least 1."""
    if steps is None:
        return None
    if not _is_int(steps) or steps < 1:
        raise UserError(f"steps must be a whole number >= 1 (or left out for the model's default), got {steps!r}")
    return int(steps)


def check_guidance(guidance) -> float | None:
    if guidance is None:
        return None
    if not isinstance(guidance, numbers.Real) or isinstance(guidance, bool) or not math.isfinite(guidance):
        raise UserError(f"guidance scale must be a finite number (e.g. 7.5; 1 turns guidance off), got {guidance!r}")
    if guidance < 0:
        raise UserError(f"guidance scale must be >= 0 (1 turns guidance off), got {guidance}")
    return float(guidance)


def check_max_batch(max_batch) -> int | str:
    if max_batch == "auto":
        return max_batch
    if not _is_int(max_batch) or max_batch < 1:
        raise UserError(f"max_batch (paths per denoiser forward) must be a whole number >= 1 or 'auto', "
                        f"got {max_batch!r}")
    return int(max_batch)


def check_size(name: str, value, factor: int) -> int | None:
    """Height or width: ``None`` means the model's default; otherwise a positive multiple of ``factor``
    (the latent grid's pixel size), because the pipelines would silently round it down."""
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise UserError(f"{name} must be a whole number of pixels, got {value!r}")
    if value > MAX_SIDE:
        raise UserError(f"{name} {value} is above {MAX_SIDE} pixels, beyond any supported model: use the model's "
                        "own size (e.g. 512 or 1024, or leave it out)")
    if value % factor:
        lower, upper = value // factor * factor, (value // factor + 1) * factor
        nearest = f"{lower} or {upper}" if lower else str(upper)
        raise UserError(f"{name} {value} is not a multiple of {factor} (this model's latent pixel size): use {nearest}")
    return int(value)


def check_device(device: str | None) -> str | None:
    """``None`` means the default; a named device must exist on this machine."""
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"device {device!r} is not a device name: use cpu, cuda, cuda:1 or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r}: this torch build sees no CUDA GPU; use --device cpu "
                            "(or install a CUDA build of torch)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices (0-based)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {device!r}: MPS is not available here; use --device cpu")
    return device


def looks_local(path_or_id: str) -> bool:
    """A path rather than a hub id: absolute, relative with ./ or ~, more than one slash, or existing."""
    return (os.path.isabs(path_or_id) or path_or_id.startswith((".", "~")) or path_or_id.count("/") > 1
            or os.path.exists(path_or_id))


_WEIGHTS = (".safetensors",)
_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weights_folder(folder: Path, what: str) -> None:
    """A folder of model weights must hold safetensors; pickled weights are refused (they can run code)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    if any(p.name.endswith(_WEIGHTS) for p in files):
        return
    if any(p.name.endswith(_PICKLES) for p in files):
        raise UserError(f"{what} {folder} has only pickle weights (.bin/.pt), which rd_inference does not load "
                        "because they can run code: convert them to safetensors (save_pretrained(..., "
                        "safe_serialization=True))")
    raise UserError(f"{what} {folder} has no weights (*.safetensors)")


def check_pipeline_source(path_or_id: str) -> None:
    """A local diffusers folder must exist, have ``model_index.json`` and safetensors in each model part."""
    if not looks_local(path_or_id):
        return  # a hub id: from_pretrained says whether it is there
    folder = Path(path_or_id).expanduser()
    if not folder.is_dir():
        raise UserError(f"model folder {path_or_id} does not exist: pass a diffusers folder or a hub id (org/name)")
    index = folder / "model_index.json"
    if not index.is_file():
        raise UserError(f"{folder} is not a diffusers pipeline folder (no model_index.json): pass a folder saved "
                        "with save_pretrained or a hub id")
    config = json.loads(index.read_text())
    check_pipeline_class(config.get("_class_name"), folder)
    from .denoisers import check_model_index

    check_model_index(config)
    for part, spec in config.items():
        if part.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        sub = folder / part
        if sub.is_dir() and (sub / "config.json").is_file() and part not in ("scheduler",):
            check_weights_folder(sub, f"the {part} folder")


def check_pipeline_class(name: str | None, where) -> None:
    """Refuse a pipeline family the search has no adapter for from its ``model_index.json`` name, before
    any weight loads (subclasses of the supported pipelines are accepted, as on load)."""
    import diffusers

    from .denoisers import denoisers, family_of

    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if not isinstance(cls, type):
        return  # a community or custom class: the loader decides, and the adapter check after it
    if family_of(name) is None:
        known = ", ".join(c.__name__ for c in denoisers())
        raise UserError(f"{where} holds a {name}, which the search does not support; supported: {known}")


def check_verifier_source(spec: str) -> None:
    """A local verifier folder must exist, have a config and safetensors weights."""
    if spec in ("brightness",) or spec.startswith("color:") or not looks_local(spec):
        return
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise UserError(f"verifier folder {spec} does not exist: pass a VLM folder, a hub id (org/name), clip:PATH, "
                        "'brightness' or 'color:R,G,B'")
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a Hugging Face model folder (no config.json): pass a VLM folder saved "
                        "with save_pretrained or a hub id")
    check_weights_folder(folder, "verifier")


def check_criteria(spec, what: str = "--criteria", *, pairwise: bool = False):
    """Verifier criteria (built-in names with optional ``:weight``, criteria files, mappings) resolve, read
    without loading any model; ``None`` means the default. Returns the resolved criteria (or None)."""
    if spec is None:
        return None
    from .criteria import builtin_criteria, builtin_pairwise, resolve_criteria

    try:
        return resolve_criteria(spec, pairwise=pairwise)
    except FileNotFoundError as exc:
        names = ", ".join(sorted(builtin_pairwise() if pairwise else builtin_criteria()))
        raise UserError(f"{what} {spec!r}: {first_line(exc)}; pass an existing .json/.toml criteria file or "
                        f"built-in names ({names})") from None
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{what} {spec!r}: {first_line(exc)}") from None


def size_factor(folder: str | os.PathLike) -> int | None:
    """Pixels per latent cell of a local diffusers folder, read from its configs without loading it:
    the VAE's downsampling (2 ** (blocks - 1)), twice that for SD3/FLUX whose transformers patch 2x2; a
    video VAE's ``scale_factor_spatial`` times the transformer's spatial patch (Wan: 8 x 2); for LTX-Video
    that cell rounded up to a multiple of 32, the sizes ``LTXPipeline`` takes (released LTX-Video: 32)."""
    folder = Path(folder).expanduser()
    try:
        name = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
        vae = json.loads((folder / "vae" / "config.json").read_text())
        if "scale_factor_spatial" in vae:
            patch = json.loads((folder / "transformer" / "config.json").read_text()).get("patch_size", [1, 1, 1])
            return int(vae["scale_factor_spatial"]) * int(patch[1] if isinstance(patch, list) else patch)
        if "spatio_temporal_scaling" in vae:  # LTX-Video's VAE; LTXPipeline also wants multiples of 32
            ratio = vae.get("spatial_compression_ratio") or vae["patch_size"] * 2 ** sum(vae["spatio_temporal_scaling"])
            patch = json.loads((folder / "transformer" / "config.json").read_text()).get("patch_size", 1)
            return math.lcm(32, int(ratio) * int(patch))
        blocks = vae["block_out_channels"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    factor = 2 ** (len(blocks) - 1)
    return factor * 2 if name.startswith(("StableDiffusion3", "Flux")) else factor


def check_image_file(path: str | os.PathLike):
    """Open an image file completely (a truncated file fails here, not halfway through scoring)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise UserError(f"image {path} is a folder: pass the image files in it")
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image file PIL can read (PNG, JPEG, WebP …)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"image {path} cannot be read ({exc}): is it truncated or damaged?") from None


def check_scores(scores, n: int, verifier, *, name: str | None = None) -> None:
    """A verifier must return ``n`` finite scores; a NaN would silently never (or always) be chosen.
    ``name`` says which verifier (default: a function's own name or the class's)."""
    import torch

    name = name or getattr(verifier, "__name__", None) or type(verifier).__name__
    if scores.shape[0] != n:
        raise ValueError(f"the verifier {name} returned {scores.shape[0]} scores for {n} images")
    if not torch.isfinite(scores).all():
        bad = [round(v, 4) for v in scores.tolist() if not math.isfinite(v)]
        raise NonFiniteError(f"the verifier {name} returned non-finite scores {bad[:4]}: check its weights "
                             "and dtype (float16 VLMs can overflow; try bfloat16 or float32)")
