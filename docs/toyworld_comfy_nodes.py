"""A ComfyUI custom node (one file, V1 style) for docs/screenshot_comfyui.py: "Load Toy World Checkpoint"
gives the embedded toy world v2 pipeline (rd_inference/toyworld/weights/v2/pipeline, 48x48 images) as
ComfyUI's MODEL, CLIP and VAE, so the example workflow's search nodes run on a CPU in seconds.

The toy networks are diffusers modules that ComfyUI's own loaders do not recognise (16-group norms, a
4x VAE), so they are wrapped rather than converted: ComfyUI's SD 1.5 model with the toy schedule (cosine
betas, epsilon prediction) and the diffusers UNet as its network; a CLIP that tokenizes and encodes with
the toy text encoder; a VAE whose latents are 4x smaller than the image (EmptyLatentImage's 96x96 is a
12x12 latent, a 48x48 image, shown 4x: 192x192).
"""

import functools

import comfy.latent_formats
import comfy.model_management
import comfy.model_patcher
import comfy.supported_models
import torch
from comfy.ldm.modules.diffusionmodules.util import make_beta_schedule

from rd_inference.pipelines import load_pipeline


class _Network(torch.nn.Module):
    """ComfyUI's ``diffusion_model(x, t, context=...)`` call on a diffusers UNet2DConditionModel."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.dtype = torch.float32

    def forward(self, x, timesteps, context=None, **kwargs):
        return self.unet(x, timesteps, encoder_hidden_states=context).sample


class _Clip:
    """What ComfyUI's text encode nodes ask of a CLIP: ``tokenize`` and ``encode_from_tokens_scheduled``."""

    def __init__(self, tokenizer, text_encoder):
        self.tokenizer, self.text_encoder = tokenizer, text_encoder

    def tokenize(self, text):
        return self.tokenizer([text], padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    @torch.no_grad()
    def encode_from_tokens_scheduled(self, tokens):
        return [[self.text_encoder(tokens)[0].float(), {}]]


class _Vae:
    """``decode(latent) -> [B,H,W,3]`` in [0,1] and ``encode`` back, with the toy AutoencoderKL. Decoded
    images are shown ``SHOW`` times larger (nearest neighbour): ComfyUI's nodes draw an image no larger than
    its pixels, and a 48x48 one is a speck on the canvas. The verifier's processor resizes them back to 48."""

    SHOW = 4

    def __init__(self, vae):
        self.vae = vae

    @torch.no_grad()
    def decode(self, latent):
        images = self.vae.decode(latent.to("cpu", torch.float32)).sample
        images = torch.nn.functional.interpolate(images, scale_factor=self.SHOW, mode="nearest")
        return ((images + 1) / 2).clamp(0, 1).movedim(1, -1)

    @torch.no_grad()
    def encode(self, pixels):
        x = pixels[..., :3].movedim(-1, 1).float() * 2 - 1
        x = torch.nn.functional.interpolate(x, scale_factor=1 / self.SHOW, mode="area")
        return self.vae.encode(x).latent_dist.mean


@functools.cache
def toy_model_clip_vae():
    pipe = load_pipeline(None, dtype=torch.float32, device="cpu")
    scale = pipe.vae.config.scaling_factor

    class ToyLatent(comfy.latent_formats.LatentFormat):
        scale_factor = scale

    config = comfy.supported_models.SD15({  # a tiny stand-in network, replaced by the toy UNet below
        "context_dim": 64, "model_channels": 32, "in_channels": 4, "out_channels": 4, "num_res_blocks": [1, 1],
        "channel_mult": [1, 2], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
        "transformer_depth_middle": 1, "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None,
        "use_linear_in_transformer": False, "use_temporal_attention": False, "use_temporal_resblock": False,
        "image_size": 32, "use_checkpoint": False,
    })
    config.latent_format = ToyLatent()
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    # The toy schedule (squaredcos_cap_v2), given as betas: ComfyUI's make_beta_schedule returns a numpy
    # array for it, which its _register_schedule cannot take.
    betas = make_beta_schedule(pipe.scheduler.config.beta_schedule, pipe.scheduler.config.num_train_timesteps)
    model.model_sampling._register_schedule(given_betas=torch.as_tensor(betas, dtype=torch.float64))
    model.diffusion_model = _Network(pipe.unet.eval())
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                               offload_device=cpu)
    return patcher, _Clip(pipe.tokenizer, pipe.text_encoder.eval()), _Vae(pipe.vae.eval())


class LoadToyWorldCheckpoint:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "loaders"
    DESCRIPTION = "The embedded toy world v2 pipeline (48x48 images shown 4x; set the empty latent to 96x96)."

    def load(self):
        return toy_model_clip_vae()


NODE_CLASS_MAPPINGS = {"RDToyWorldCheckpoint": LoadToyWorldCheckpoint}
NODE_DISPLAY_NAME_MAPPINGS = {"RDToyWorldCheckpoint": "Load Toy World Checkpoint"}
