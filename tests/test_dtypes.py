"""dtype="auto": half precision on CUDA by family, float32 elsewhere; SDXL's VAE kept in float32."""

import pytest
import torch
from tiny_pipelines import tiny_sd, tiny_sdxl

from rd_inference.checks import UserError
from rd_inference.denoisers import family_of
from rd_inference.dtypes import auto_dtype, resolve_dtype, upcast_vae
from rd_inference.pipelines import load_pipeline

FAMILIES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl",
            "StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux", "WanPipeline": "wan", "LTXPipeline": "ltx",
            "PixArtAlphaPipeline": None,
            "StableDiffusionImg2ImgPipeline": None, "NoSuchPipeline": None}


@pytest.mark.parametrize("name, family", FAMILIES.items())
def test_family_from_the_class_name(name, family):
    assert family_of(name) == family


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_on_cuda_by_family(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    half = torch.bfloat16 if bf16 else torch.float16
    expected = {"StableDiffusionPipeline": torch.float16, "StableDiffusionXLPipeline": torch.float16,
                "StableDiffusion3Pipeline": half, "FluxPipeline": half, "WanPipeline": half, "LTXPipeline": half,
                "PixArtAlphaPipeline": torch.float32}
    for name, dtype in expected.items():
        assert auto_dtype(name, "cuda:0") == dtype, name
        assert auto_dtype(name, "cpu") == torch.float32 and auto_dtype(name, None) == torch.float32


def test_resolve_names_and_refuse_unknown_ones():
    assert resolve_dtype("bfloat16", None, "cpu") == torch.bfloat16
    assert resolve_dtype(None, "FluxPipeline", "cuda") is None  # the weights' own dtype
    with pytest.raises(UserError, match="dtype 'float8' is not a torch dtype"):
        resolve_dtype("float8", None, "cpu")


def test_sdxl_vae_stays_float32_in_half_precision_and_sd_follows_the_pipeline():
    xl = tiny_sdxl().to(torch.float16)
    upcast_vae(xl, "sdxl")
    assert xl.vae.dtype == torch.float32 and xl.unet.dtype == torch.float16
    sd = tiny_sd().to(torch.float16)
    upcast_vae(sd, "sd")
    assert sd.vae.dtype == torch.float16  # StableDiffusionPipeline does not upcast its VAE either


def test_load_pipeline_auto_is_float32_on_cpu_and_recorded(tmp_path):
    from rd_inference import BrightnessVerifier, search

    tiny_sd().save_pretrained(tmp_path / "m")
    pipe = load_pipeline(tmp_path / "m", device="cpu")
    assert pipe.unet.dtype == torch.float32
    result = search(pipe, "a cat", verifier=BrightnessVerifier(), strategy="bon", n=1, steps=2, height=16, width=16)
    assert result.config["denoiser"]["dtype"] == "torch.float32"
    assert result.config["denoiser"]["vae_dtype"] == "torch.float32"
