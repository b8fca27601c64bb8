"""Import-only stand-in for torchvision, for tests that load ComfyUI on a CPU-only torch.

No CPU torchvision wheel matches torch here and PyPI's breaks on import; ComfyUI imports torchvision at
module level in a few model files (Cosmos, Stable Cascade, ACE) that these tests never run. Anything that
actually uses it fails loudly. transformers and diffusers would take it for a real torchvision (they only
look for the module), so the fixture lets them decide "absent" first and removes the stub once ComfyUI has
imported (tests/comfyui/conftest.py).
"""

from . import transforms  # noqa: F401


def __getattr__(name):
    raise AttributeError(f"torchvision is a test stub here (no {name!r}): the test used a torchvision feature")
