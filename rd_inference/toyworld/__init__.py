"""A procedural shapes world with an exact pixel oracle, and a tiny diffusers pipeline trained on it.

The world (``world``), its prompt grammar and splits (``prompts``) and the oracle (``oracle``) are
pure numpy/PIL; ``sampling`` runs the shipped ``StableDiffusionPipeline`` and labels its samples.
"""

from rd_inference.toyworld.oracle import CheckResult, check
from rd_inference.toyworld.prompts import (
    SKILLS,
    SPLITS,
    ParsedPrompt,
    PromptError,
    all_prompts,
    parse,
    prompts,
    split_of,
)
from rd_inference.toyworld.world import COLOURS, SHAPES, SIZE, Scene, SceneObject, render, sample_scene

__all__ = [
    "COLOURS",
    "SHAPES",
    "SIZE",
    "SKILLS",
    "SPLITS",
    "CheckResult",
    "ParsedPrompt",
    "PromptError",
    "Scene",
    "SceneObject",
    "all_prompts",
    "check",
    "parse",
    "prompts",
    "render",
    "sample_scene",
    "split_of",
]
