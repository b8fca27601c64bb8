"""Test-only ComfyUI custom node (one file, V1 style): a tiny random-weight SD 1.5 model, a tiny TAESD VAE
and random conditioning, so graphs run on a CPU in seconds without any downloaded weights.

Loaded by the tests in-process (``nodes.load_custom_node``) and by the loopback server test (through a
``custom_nodes`` folder named in an extra_model_paths.yaml).
"""

import functools

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
                       "RDTestTinyCLIP": TinyCLIP}
