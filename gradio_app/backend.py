"""What the page runs on: model and verifier loading (cached, injectable) and readable errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr
import torch

log = logging.getLogger("gradio_app")

ModelLoader = Callable[[str | None], Any]  # path/id or None (embedded) -> diffusers pipeline
VerifierLoader = Callable[[str | None, str | None, str | None], Any]  # (path/id, quantization, criteria)


class Cancelled(gr.Error):
    """The user pressed Cancel: the search stopped at its next step and nothing was kept."""


def _blank(text: str | None) -> str | None:
    return text.strip() if text and text.strip() else None


class Backend:
    """Loads what a request names and keeps the last pipeline and verifier, so a page's second click does
    not reload weights. ``load_model`` / ``load_verifier`` default to :mod:`rd_inference`'s loaders;
    tests inject tiny ones. One entry each is cached: a new model replaces the old (device memory)."""

    def __init__(self, load_model: ModelLoader | None = None, load_verifier: VerifierLoader | None = None,
                 device: str | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.uses_embedded_loaders = load_model is None and load_verifier is None
        self._load_model = load_model or self._default_model
        self._load_verifier = load_verifier or self._default_verifier
        self._model: tuple[Any, Any] | None = None
        self._verifier: tuple[Any, Any] | None = None
        self._cancel: dict[str, threading.Event] = {}  # session -> its running search's cancel flag

    def _default_model(self, spec: str | None):
        from rd_inference.pipelines import default_model_path, load_pipeline

        if spec is None:
            _embedded(default_model_path, "Model", "a diffusers folder or hub id")
        return load_pipeline(spec, device=self.device)

    def _default_verifier(self, spec: str | None, quantization: str | None, criteria: str | None):
        from rd_inference.verifier_loading import default_verifier_path, load_verifier

        if spec is None:
            _embedded(default_verifier_path, "Verifier", "a VLM folder or hub id, or brightness")
        return load_verifier(spec, device=self.device, quantization=quantization, criteria=criteria)

    def model(self, spec: str | None):
        key = _blank(spec)
        if self._model is None or self._model[0] != key:
            self._model = None  # drop the old weights before loading the new ones
            self._model = (key, self._load_model(key))
        return self._model[1]

    def verifier(self, spec: str | None, quantization: str | None = None, criteria: str | None = None):
        key = (_blank(spec), None if quantization in (None, "none") else quantization, _blank(criteria))
        cached = self._verifier
        if cached is not None and cached[0][:2] == key[:2] and hasattr(cached[1], "with_criteria"):
            # Same weights, other questions: share the loaded VLM instead of loading it again.
            if cached[0] != key:
                self._verifier = (key, cached[1].with_criteria(key[2]))
        elif cached is None or cached[0] != key:
            self._verifier = None
            self._verifier = (key, self._load_verifier(*key))
        return self._verifier[1]

    def recommended(self, spec: str | None) -> dict:
        """The settings the model folder ``spec`` recommends (``rd_inference_defaults.json``); an empty field
        is the embedded toy model (which ships them) only when this backend loads it, not an injected model."""
        from rd_inference.pipelines import EMBEDDED_PIPELINE, model_defaults

        return model_defaults(_blank(spec) or (EMBEDDED_PIPELINE if self.uses_embedded_loaders else None))

    def start_job(self, session: str | None) -> threading.Event:
        """A fresh cancel flag for the session's new search (a Cancel click sets it)."""
        flag = self._cancel[session or ""] = threading.Event()
        return flag

    def cancel(self, session: str | None) -> None:
        flag = self._cancel.get(session or "")
        if flag is not None:
            flag.set()

    def notice(self) -> str | None:
        """A line for the page when the embedded toy models that the empty fields stand for are missing."""
        if not self.uses_embedded_loaders:
            return None
        from rd_inference.pipelines import default_model_path
        from rd_inference.verifier_loading import default_verifier_path

        missing = []
        for what, field, probe in (("model", "Model", default_model_path),
                                   ("verifier", "Verifier", default_verifier_path)):
            try:
                probe()
            except FileNotFoundError:
                missing.append(f"the embedded toy {what} is not installed: fill in the **{field}** field")
        return ("⚠️ " + "; ".join(missing) + " (under *Models*).") if missing else None


SOP_FIELDS = ("m", "sigma_start", "delta_f", "delta_b", "widen", "rollover", "keep_parent")  # the page's SoP fields


def embedded_sop_settings(backend: Backend) -> dict[str, Any]:
    """The embedded toy model's tuned Search over Paths settings for the page's fields, as the command
    line uses them (its folder's ``rd_inference_defaults.json``); none when the page loads other models."""
    from rd_inference.pipelines import EMBEDDED_PIPELINE, model_defaults

    if not backend.uses_embedded_loaders:
        return {}
    try:
        sop = model_defaults(EMBEDDED_PIPELINE).get("strategies", {}).get("sop", {})
    except (OSError, ValueError):  # the embedded model is not installed: the page says so elsewhere
        return {}
    return {k: sop[k] for k in SOP_FIELDS if k in sop}


def _embedded(probe: Callable[[], Any], field: str, what: str) -> None:
    """Say which page field to fill when an empty field stands for an embedded model that is missing."""
    try:
        probe()
    except FileNotFoundError:
        raise FileNotFoundError(f"the embedded toy {field.lower()} is not installed: fill in the {field} field "
                                f"(Models) with {what}") from None


@contextmanager
def readable_errors(action: str) -> Iterator[None]:
    """Turn any failure into a one-line message in the page (``gr.Error``); the traceback goes to the log."""
    try:
        yield
    except gr.Error:  # Cancelled included
        raise
    except torch.OutOfMemoryError:
        log.exception("%s: out of memory", action)
        raise gr.Error(f"{action}: out of memory on {action_device()}. Lower the budget, N, M or the image "
                       "size, or load the verifier in 8-bit/4-bit.", print_exception=False) from None
    except (ValueError, FileNotFoundError, FileExistsError, OSError, TypeError) as exc:
        log.info("%s: %s", action, exc)
        raise gr.Error(f"{action}: {exc}", print_exception=False) from None
    except Exception as exc:
        log.exception("%s failed", action)
        raise gr.Error(f"{action} failed ({type(exc).__name__}: {exc}); the server log has the details.",
                       print_exception=False) from None


def action_device() -> str:
    return "the GPU" if torch.cuda.is_available() else "this machine"
