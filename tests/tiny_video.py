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
