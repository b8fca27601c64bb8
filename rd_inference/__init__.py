"""rd_inference: test-time scaling for diffusion image models with yes-token VLM verifiers."""

__version__ = "0.1.0"

from .api import SearchResult, regenerate, search
from .verifiers import BrightnessVerifier, ColorVerifier, ConstantVerifier

__all__ = ["BrightnessVerifier", "ColorVerifier", "ConstantVerifier", "SearchResult", "regenerate", "search"]
