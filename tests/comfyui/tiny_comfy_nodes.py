"""Test-only ComfyUI custom node (one file, V1 style): a tiny random-weight SD 1.5 model, a tiny TAESD VAE
and random conditioning, and ComfyUI's own Wan 2.1 text-to-video model and Wan 2.1 VAE built from tiny
configs, so graphs run on a CPU in seconds without any downloaded weights.

Loaded by the tests in-process (``nodes.load_custom_node``) and by the loopback server test (through a
``custom_nodes`` folder named in an extra_model_paths.yaml).
"""

import functools

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
        return [[torch.randn(1, 77, CONTEXT_DIM, generator=g), {}]]


class TinyCLIP:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self):
        return (_TinyClip(),)


NODE_CLASS_MAPPINGS = {"RDTestTinySD15": TinySD15, "RDTestTinyConditioning": TinyConditioning,
                       "RDTestTinyCLIP": TinyCLIP, "RDTestTinyWan": TinyWan, "RDTestTinyWanVAE": TinyWanVAE}
