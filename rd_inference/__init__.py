"""rd_inference: test-time scaling for diffusion image models with yes-token VLM verifiers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public names load on first use (PEP 562), so `rd-tts --help` and the light submodules (budget
# parsing, checks, run directories) do not pay for importing torch and diffusers.
_LAZY = {
    "SearchResult": ".api", "regenerate": ".api", "search": ".api",
    "BrightnessVerifier": ".verifiers", "ColorVerifier": ".verifiers", "ConstantVerifier": ".verifiers",
}

if TYPE_CHECKING:
    from .api import SearchResult, regenerate, search
    from .verifiers import BrightnessVerifier, ColorVerifier, ConstantVerifier

__all__ = ["BrightnessVerifier", "ColorVerifier", "ConstantVerifier", "SearchResult", "regenerate", "search"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
