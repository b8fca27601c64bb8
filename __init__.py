"""ComfyUI entry point: ComfyUI imports this file when the repository is cloned into ``custom_nodes/``.

The nodes live in :mod:`comfy_nodes`; they are a thin face over :mod:`rd_inference`, which imports nothing
from ComfyUI. Only ``comfy_entrypoint`` is exported: a module with ``NODE_CLASS_MAPPINGS`` would have its
V3 entry point ignored. Importing this file does nothing else (pytest imports it too, as the package at the
repository root, outside ComfyUI).
"""


async def comfy_entrypoint():
    from .comfy_nodes import comfy_entrypoint as entrypoint

    return await entrypoint()


__all__ = ["comfy_entrypoint"]
