"""ComfyUI nodes for test-time scaling (V3 API, ``comfy_api.latest``): load a VLM verifier, score and rank
image batches, and sample with a search. Loaded through the repository root's ``__init__.py``."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io


class TestTimeScalingExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .nodes import NODES

        return NODES


async def comfy_entrypoint() -> TestTimeScalingExtension:
    """Called by ComfyUI when it loads the custom node: registers ``models/vlm`` and lists the nodes."""
    from .verifier import register_folder

    register_folder()
    return TestTimeScalingExtension()
