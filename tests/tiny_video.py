"""A tiny random-weight ``WanPipeline`` built from configs (no hub), in the manner of diffusers' own
``tests/pipelines/wan/test_wan.py`` ``get_dummy_components``: a 2-layer Wan transformer, a 3-channel
causal video VAE (4x temporal, 8x spatial), a tiny T5 encoder and the word-level tokenizer built on the spot."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
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
