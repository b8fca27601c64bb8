"""Tiny random-weight video pipelines built from configs (no hub), in the manner of diffusers' own
``get_dummy_components``. ``tiny_wan``: a 2-layer Wan transformer, a 3-channel causal video VAE (4x temporal,
8x spatial). ``tiny_ltx``: a 1-layer LTX-Video transformer and an LTX video VAE compressing 8x in time and
space, as the released LTX-Video does in time (so num_frames is 8k + 1). Both use a tiny T5 encoder and the
word-level tokenizer built on the spot."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    LTXPipeline,
    LTXVideoTransformer3DModel,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from tiny_pipelines import WORDS, _ready, tiny_tokenizer
from transformers import T5Config, T5EncoderModel


def wan_unipc_scheduler(flow_shift: float = 3.0) -> UniPCMultistepScheduler:
    """The scheduler Wan 2.1 ships with (UniPC on shifted flow sigmas, flow prediction)."""
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift,
                                   num_train_timesteps=1000)


def tiny_wan(scheduler=None) -> WanPipeline:
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(WORDS) + 4, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=2)
    )
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )
    pipe = WanPipeline(
        tokenizer=tiny_tokenizer(max_length=16), text_encoder=text_encoder, vae=vae,
        scheduler=scheduler or FlowMatchEulerDiscreteScheduler(shift=7.0), transformer=transformer,
    )
    return _ready(pipe)


def ltx_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The scheduler LTX-Video ships: Euler on flow sigmas, shifted by ``mu`` from the video's sequence length
    (``use_dynamic_shifting``) and stretched to end at 0.1 (``shift_terminal``)."""
    return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=1024, max_image_seq_len=4096,
                                           base_shift=0.95, max_shift=2.05, shift_terminal=0.1)


def tiny_ltx(scheduler=None, *, timestep_conditioning: bool = False, inject_noise: bool = False) -> LTXPipeline:
    """``timestep_conditioning`` and ``inject_noise`` build the decoder of LTX-Video 0.9.1 and later (a decode
    timestep; noise drawn from the global generator inside the decoder)."""
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=1, caption_channels=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(inject_noise, False, False, False, False), upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1), timestep_conditioning=timestep_conditioning, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False,
    )
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(WORDS) + 4, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=2)
    )
    pipe = LTXPipeline(
        tokenizer=tiny_tokenizer(max_length=16), text_encoder=text_encoder, vae=vae,
        scheduler=scheduler or ltx_scheduler(), transformer=transformer,
    )
    return _ready(pipe)


def check_equal_budget_video_search(pipe, prompt: str, strategy: str, params: dict, tiny: dict, *,
                                    all_spent: bool = True):
    """Run ``strategy`` twice at 4x with 3 verified frames and check what every video family must give: the
    forwards the dry-run plan says (all of the budget, or at least 95% of it), one decode and one verifier
    image per candidate, 3 frames per verified video, videos of ``tiny``'s size, and the same bytes twice.
    Returns the first result for family-specific checks."""
    import numpy as np

    from rd_inference import BrightnessVerifier, search
    from rd_inference.denoisers import make_denoiser
    from rd_inference.plan import dry_run
    from rd_inference.strategies import get_strategy

    a, b = [search(pipe, prompt, verifier=BrightnessVerifier(), strategy=strategy, budget="4x", seed=3,
                   verify_frames=3, **tiny, **params) for _ in range(2)]
    budget = 4 * tiny["steps"] * 2
    assert a.counts["budget_nfe"] == budget and a.counts["nfe"] == a.counts["planned_nfe"]
    assert a.counts["nfe"] == budget if all_spent else 0.95 * budget <= a.counts["nfe"] <= budget
    assert a.counts["decodes"] == a.counts["verifier_images"] == len(a.candidates)
    assert a.counts["verifier_frames"] == 3 * a.counts["verifier_images"]
    den = make_denoiser(pipe, prompt, steps=tiny["steps"], height=tiny["height"], width=tiny["width"],
                        num_frames=tiny["num_frames"])
    plan = dry_run(den, get_strategy(strategy), a.config["params"], seed=3)
    assert (plan.forwards, plan.decodes, plan.verifier_images) == (a.counts["nfe"], a.counts["decodes"],
                                                                   a.counts["verifier_images"])
    assert isinstance(a.image, list) and len(a.image) == tiny["num_frames"]
    assert a.image[0].size == (tiny["width"], tiny["height"])
    assert a.node_id == b.node_id and a.tree.to_jsonl() == b.tree.to_jsonl()
    for frames_a, frames_b in zip(a.candidates.values(), b.candidates.values()):
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(frames_a, frames_b))
    assert a.config["denoiser"]["num_frames"] == tiny["num_frames"] and a.config["denoiser"]["verify_frames"] == 3
    return a
