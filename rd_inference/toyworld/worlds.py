"""The two shapes worlds behind one interface, so that sampling, evaluation and training scripts take a
``--world`` name instead of importing one world's modules.

- ``v1``: 32x32, three shapes, five colours, at most three objects; five skills (the shipped pipeline).
- ``v2``: 48x48, six shapes, six colours, up to five objects; GenEval's six tasks; relations must
  dominate and unclean samples are "malformed" (see ``rd_inference.toyworld.v2``).
- ``v3``: v2's shapes, colours and oracle on 64x64 with larger objects; counts to six and three-object
  colour binding (see ``rd_inference.toyworld.v3``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

WORLDS = ("v1", "v2", "v3")
_WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class World:
    name: str
    size: int
    tasks: tuple[str, ...]
    prompts: Callable  # (split, task=None) -> tuple[str, ...]
    parse: Callable
    check: Callable  # (image, prompt) -> CheckResult
    render: Callable
    sample_scene: Callable
    weights: Path  # folder holding pipeline/ and verifier/

    @property
    def pipeline_path(self) -> Path:
        return self.weights / "pipeline"

    @property
    def verifier_path(self) -> Path:
        return self.weights / "verifier"


def get_world(name: str = "v1") -> World:
    """The named world; a clear error for anything else."""
    if name == "v1":
        # by module path: the package re-exports a *function* named prompts
        oracle, prompts, world = (import_module(f"rd_inference.toyworld.{m}") for m in ("oracle", "prompts", "world"))
        return World("v1", world.SIZE, prompts.SKILLS, prompts.prompts, prompts.parse, oracle.check,
                     world.render, world.sample_scene, _WEIGHTS / "v1")
    if name in ("v2", "v3"):
        oracle, prompts, world = (import_module(f"rd_inference.toyworld.{name}.{m}") for m in ("oracle", "prompts", "world"))
        return World(name, world.SIZE, prompts.TASKS, prompts.prompts, prompts.parse, oracle.check,
                     world.render, world.sample_scene, _WEIGHTS / name)
    raise ValueError(f"unknown toy world {name!r}; known: {', '.join(WORLDS)}")
