"""The dtype a diffusion pipeline runs in when the user does not choose: ``dtype="auto"``.

On CUDA: bfloat16 for SD3, FLUX, Wan and LTX-Video (trained and released in it; float16 overflows in their
transformers), float16 for SD 1.5/2.x and SDXL (their released weights), with SDXL's VAE kept in float32
where its config asks for it (``force_upcast``), as ``StableDiffusionXLPipeline`` upcasts it to decode, and
Wan's video VAE in float32, as Wan's model cards load it (LTX-Video's cards load the whole pipeline,
VAE included, in bfloat16).
Everywhere else float32: CPU half-precision kernels are slow or missing.
"""

from __future__ import annotations

import torch

HALF = {"sd": torch.float16, "sdxl": torch.float16, "sd3": torch.bfloat16, "flux": torch.bfloat16,
        "wan": torch.bfloat16, "ltx": torch.bfloat16}


def auto_dtype(class_name: str | None, device: str | torch.device | None) -> torch.dtype:
    if device is None or torch.device(device).type != "cuda":
        return torch.float32
    from .denoisers import family_of

    dtype = HALF.get(family_of(class_name), torch.float32)
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return torch.float16  # pre-Ampere GPUs
    return dtype


def resolve_dtype(dtype: torch.dtype | str | None, class_name: str | None, device) -> torch.dtype | None:
    """``"auto"`` -> :func:`auto_dtype`; a name like ``"bfloat16"`` -> that dtype; None -> the weights' own."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return auto_dtype(class_name, device)
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        from .checks import UserError

        raise UserError(f"dtype {dtype!r} is not a torch dtype: use auto, float32, float16 or bfloat16")
    return value


def upcast_vae(pipe, family: str | None) -> None:
    """Keep SDXL's VAE in float32 when the rest is float16 and its config asks (it overflows otherwise), and
    Wan's video VAE in float32 always."""
    vae = getattr(pipe, "vae", None)
    if family == "wan" and vae is not None and vae.dtype != torch.float32:
        vae.to(torch.float32)
        return
    if family == "sdxl" and vae is not None and vae.dtype == torch.float16 and vae.config.get("force_upcast"):
        vae.to(torch.float32)
