"""The Gradio demo: a thin face over :mod:`rd_inference`. Launch with ``python -m gradio_app`` or
``rd-tts demo``; build it in Python with :func:`build_demo` (inject your own loaders through
:class:`Backend`) and serve it with :func:`launch`."""

from .app import build_demo, launch
from .backend import Backend

__all__ = ["Backend", "build_demo", "launch"]
