"""Attention kernels and ``torch.compile`` for the denoiser and the VLM verifier, as options.

Both are the libraries' own switches — diffusers' ``set_attention_backend`` and regional
``compile_repeated_blocks``, transformers' ``attn_implementation``, ``torch.compile`` — named once here for
every face, and the names are checked before any weight loads. Neither changes what is computed beyond
kernel-level rounding; neither is on by default, because the right kernel depends on the GPU and compiling
costs tens of seconds that only long searches win back.
"""

from __future__ import annotations

from typing import Any

from .checks import UserError

# transformers' attn_implementation values that need no extra package; others (flash_attention_2, ...) pass
# through to transformers, which names the missing package itself.
VLM_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


def pipeline_attention_backends() -> list[str]:
    from diffusers.models.attention_dispatch import AttentionBackendName

    return [b.value for b in AttentionBackendName]


def check_attention(pipeline_backend: str | None, vlm_backend: str | None) -> None:
    """One line naming the choices for an unknown backend, before anything loads."""
    if pipeline_backend is not None and pipeline_backend not in (known := pipeline_attention_backends()):
        public = [b for b in known if not b.startswith("_")]  # the "_"-prefixed ones are variants of these
        raise UserError(f"--attention {pipeline_backend!r} is not a diffusers attention backend; "
                        f"choose one of: {', '.join(public)} (or a variant listed in diffusers' AttentionBackendName)")
    if vlm_backend is not None and vlm_backend not in VLM_ATTENTION:
        raise UserError(f"--verifier-attention {vlm_backend!r} is not a transformers attn_implementation; "
                        f"choose one of: {', '.join(VLM_ATTENTION)}")


def denoiser_module(pipe: Any):
    """The pipeline's network that runs once per step (``transformer`` for SD3/FLUX, ``unet`` otherwise)."""
    module = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if module is None:
        raise UserError(f"{type(pipe).__name__} has neither a transformer nor a unet to set attention or compile on")
    return module


def speed_up_pipeline(pipe: Any, *, attention: str | None = None, compile: bool = False) -> Any:
    """Set the denoiser's attention backend and/or compile it, in place; returns ``pipe``.

    Compilation is regional where the model declares its repeated blocks (UNet transformer blocks, FLUX
    blocks): each block compiles once and is reused, which diffusers documents as most of the speed-up for a
    fraction of the compile time; elsewhere the whole module compiles."""
    module = denoiser_module(pipe)
    if attention is not None:
        module.set_attention_backend(attention)
    if compile:
        if getattr(module, "_repeated_blocks", None):
            module.compile_repeated_blocks()
        else:
            module.compile()
    return pipe
