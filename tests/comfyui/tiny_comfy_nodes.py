"""Test-only ComfyUI custom node (one file, V1 style): a tiny random-weight SD 1.5 model, a tiny TAESD VAE
and random conditioning, and ComfyUI's own Wan 2.1 and LTX-Video text-to-video models and video VAEs built
from tiny configs, so graphs run on a CPU in seconds without any downloaded weights.

Loaded by the tests in-process (``nodes.load_custom_node``) and by the loopback server test (through a
``custom_nodes`` folder named in an extra_model_paths.yaml).
"""

import functools
import json

import comfy.ldm.lightricks.vae.causal_video_autoencoder
import comfy.ldm.wan.vae
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
import comfy.taesd.taesd
import torch

CONTEXT_DIM = 32
UNET = {
    "context_dim": CONTEXT_DIM,
    "model_channels": 32,
    "use_linear_in_transformer": False,
    "adm_in_channels": None,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "in_channels": 4,
    "out_channels": 4,
    "num_res_blocks": [1, 1],
    "channel_mult": [1, 2],
    "transformer_depth": [1, 1],
    "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "use_spatial_transformer": True,
    "legacy": False,
    "image_size": 32,
    "use_checkpoint": False,
}


def _init(module: torch.nn.Module, seed: int, std: float) -> None:
    # ComfyUI's ops skip weight initialisation: the parameters start as uninitialised memory.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


@functools.cache
def tiny_model_and_vae():
    config = comfy.supported_models.SD15(UNET)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _init(model, 0, 0.02)
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
    _init(taesd, 1, 0.1)
    return patcher, comfy.sd.VAE(sd=taesd.state_dict())


# ComfyUI's Wan 2.1 T2V class (WanModel under model_base.WAN21, flow sampling with shift 8) at tiny sizes:
# 2 heads of 16 channels, 2 blocks; text_dim is CONTEXT_DIM so TinyCLIP's conditioning fits it.
WAN = {"image_model": "wan2.1", "model_type": "t2v", "patch_size": (1, 2, 2), "in_dim": 16, "out_dim": 16,
       "dim": 32, "ffn_dim": 64, "freq_dim": 32, "text_dim": CONTEXT_DIM, "num_heads": 2, "num_layers": 2}
WAN_VAE_DIM = 8  # the Wan 2.1 VAE's base width (96 in the real one); ComfyUI reads it off the weights


@functools.cache
def tiny_wan():
    config = comfy.supported_models.WAN21_T2V(dict(WAN))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _init(model, 2, 0.02)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


@functools.cache
def tiny_wan_vae():
    vae = comfy.ldm.wan.vae.WanVAE(dim=WAN_VAE_DIM, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                   attn_scales=[], temperal_downsample=[False, True, True])
    _init(vae, 3, 0.1)
    return comfy.sd.VAE(sd=vae.state_dict())  # detected as a Wan 2.1 VAE by its keys, as VAELoader does


class TinyWan:
    """In place of UNETLoader on a Wan 2.1 T2V file."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self):
        return (tiny_wan(),)


class TinyWanVAE:
    """In place of VAELoader on wan_2.1_vae.safetensors."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self):
        return (tiny_wan_vae(),)


# ComfyUI's LTX-Video class (LTXVModel under model_base.LTXV, flux-style shifted flow sampling) at tiny sizes:
# 2 heads of 16 channels, 2 blocks; caption_channels is CONTEXT_DIM so TinyCLIP's conditioning fits it. The
# latent keeps LTXV's 128 channels (the VAE's per-channel statistics and comfy.sd.VAE fix them).
LTXV = {"image_model": "ltxv", "in_channels": 128, "cross_attention_dim": 32, "attention_head_dim": 16,
        "num_attention_heads": 2, "caption_channels": CONTEXT_DIM, "num_layers": 2}
# The LTXV causal video VAE, smallest that keeps LTXV's 8x temporal and 32x spatial compression: patch size
# 4 and three 2x2x2 depth-to-space blocks; the last decoder block is a res block (comfy.sd.VAE detects the
# LTXV VAE by decoder.up_blocks.0.res_blocks.0.conv1's key). Its widths are fixed at 128 channels by
# ComfyUI (VideoVAE passes no base_channels), so it has 15M weights. Timestep-conditioned, as LTXV 0.9.1+'s
# VAE: its decode mixes torch.randn noise into the latent.
LTXV_VAE = {"dims": 3, "latent_channels": 128, "patch_size": 4, "norm_layer": "pixel_norm",
            "latent_log_var": "uniform", "causal_decoder": False, "timestep_conditioning": True,
            "encoder_blocks": [["compress_all", {}]] * 3,
            "decoder_blocks": [*[["compress_all", {"residual": True}]] * 3, ["res_x", {"num_layers": 1}]]}


@functools.cache
def tiny_ltxv():
    config = comfy.supported_models.LTXV(dict(LTXV))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _init(model, 4, 0.02)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


@functools.cache
def tiny_ltxv_vae():
    vae = comfy.ldm.lightricks.vae.causal_video_autoencoder.VideoVAE(config=LTXV_VAE)
    _init(vae, 5, 0.05)
    sd = vae.state_dict()
    for name in ("std-of-means", "mean-of-stds", "mean-of-stds_over_std-of-means", "channel"):
        sd[f"per_channel_statistics.{name}"] = torch.ones(128)
    sd["per_channel_statistics.mean-of-means"] = torch.zeros(128)
    # Detected as an LTXV VAE by its keys; its size read from the file's metadata, as ComfyUI reads the config
    # LTX-Video's .safetensors files carry ({"vae": {...}} under "config").
    return comfy.sd.VAE(sd=sd, metadata={"config": json.dumps({"vae": LTXV_VAE})})


class TinyLTXVCheckpoint:
    """In place of CheckpointLoaderSimple on an LTX-Video checkpoint (model and VAE; its CLIP is unused)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self):
        return tiny_ltxv(), _TinyT5(), tiny_ltxv_vae()


class TinySD15:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("MODEL", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self):
        return tiny_model_and_vae()


class TinyConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "encode"
    CATEGORY = "testing"

    def encode(self, seed):
        g = torch.Generator().manual_seed(seed)
        return [[torch.randn(1, 77, CONTEXT_DIM, generator=g), {}]], [[torch.zeros(1, 77, CONTEXT_DIM), {}]]


class _TinyClip:
    """What a CLIP text encoder offers a node (tokenize, encode_from_tokens_scheduled), seeded by the text."""

    def tokenize(self, text):
        return text

    def encode_from_tokens_scheduled(self, tokens):
        g = torch.Generator().manual_seed(sum(map(ord, tokens)))
        return [[torch.randn(1, 77, CONTEXT_DIM, generator=g), self.extra(tokens)]]

    def extra(self, tokens) -> dict:
        return {}


class _TinyT5(_TinyClip):
    """As ComfyUI's LTXV text encoder (T5 XXL, ``CLIPLoader`` type ltxv): the conditioning carries the token
    attention mask, which LTXVModel requires; tokens after the text's words are padding."""

    def extra(self, tokens) -> dict:
        mask = torch.zeros(1, 77, dtype=torch.long)
        mask[:, : len(tokens.split()) + 1] = 1
        return {"attention_mask": mask}


class TinyCLIP:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self):
        return (_TinyClip(),)


class TinyLTXVT5(TinyCLIP):
    """In place of CLIPLoader (type ltxv) on t5xxl."""

    def load(self):
        return (_TinyT5(),)


NODE_CLASS_MAPPINGS = {"RDTestTinySD15": TinySD15, "RDTestTinyConditioning": TinyConditioning,
                       "RDTestTinyCLIP": TinyCLIP, "RDTestTinyWan": TinyWan, "RDTestTinyWanVAE": TinyWanVAE,
                       "RDTestTinyLTXVCheckpoint": TinyLTXVCheckpoint, "RDTestTinyLTXVT5": TinyLTXVT5}
