"""Shared test settings and fixtures: tiny VLMs of each family, built once per session (tests/tiny_vlm.py)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

# Tiny models: one thread is faster than two fighting over small kernels, and keeps runs reproducible.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory) -> dict[str, str]:
    """family -> folder of a saved tiny VLM (safetensors + processor files)."""
    from tiny_vlm import FAMILIES, build_tiny_vlm

    root = tmp_path_factory.mktemp("tiny_vlms")
    return {family: str(build_tiny_vlm(family, root / family)) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_verifiers(tiny_vlms) -> dict:
    """family -> full-precision YesTokenVerifier on CPU (shared: tests must not change its settings)."""
    from rd_inference.yes_token import YesTokenVerifier

    return {f: YesTokenVerifier.from_pretrained(p, device="cpu") for f, p in tiny_vlms.items()}


@pytest.fixture(autouse=True)
def _quiet_bnb():
    # bitsandbytes on CPU warns on every 8-bit matmul that it casts to float16; expected here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="MatMul8bitLt")
        yield


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """Folder of a tiny random CLIP (tests/tiny_scorers.py): the target of clip: and pickscore:."""
    from tiny_scorers import build_tiny_clip

    return str(build_tiny_clip(tmp_path_factory.mktemp("tiny_clip") / "clip"))


@pytest.fixture(scope="session")
def tiny_aesthetic(tmp_path_factory) -> str:
    """Folder of a tiny aesthetic predictor (tests/tiny_scorers.py): the target of aesthetic:."""
    from tiny_scorers import build_tiny_aesthetic

    return str(build_tiny_aesthetic(tmp_path_factory.mktemp("tiny_aesthetic")))
