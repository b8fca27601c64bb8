"""Turn a command-line ``--verifier`` value into a verifier."""

from __future__ import annotations

from pathlib import Path

from .checks import UserError, check_verifier_source, first_line
from .verifiers import BrightnessVerifier, ColorVerifier, Verifier


def default_verifier_path() -> Path:
    path = Path(__file__).parent / "toyworld" / "weights" / "verifier"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no embedded default verifier at {path}; pass --verifier")
    return path


def load_verifier(spec: str | None, *, device: str | None = None, quantization: str | None = None,
                  criteria: str | None = None, offload: bool = False, attention: str | None = None,
                  compile: bool = False) -> Verifier:
    """``brightness``, ``color:R,G,B`` (floats in [0,1]), a VLM folder / hub id, or None for the embedded one.
    ``attention`` and ``compile`` apply to a VLM (see :mod:`rd_inference.speed_options`)."""
    if spec == "brightness":
        return BrightnessVerifier()
    if spec is not None and spec.startswith("color:"):
        try:
            rgb = tuple(float(v) for v in spec.split(":", 1)[1].split(","))
        except ValueError:
            raise ValueError(f"--verifier {spec!r}: write a colour as color:R,G,B with numbers in [0,1]") from None
        return ColorVerifier(rgb)
    from .yes_token import YesTokenVerifier

    path = str(spec) if spec is not None else str(default_verifier_path())
    check_verifier_source(path)
    kwargs = {"device": device, "offload": offload, "attn_implementation": attention, "compile": compile}
    if quantization not in (None, "none"):
        kwargs["quantization"] = quantization
    if criteria is not None:
        kwargs["criteria"] = criteria
    try:
        return YesTokenVerifier.from_pretrained(path, **kwargs)
    except OSError as exc:  # not on the hub, no network, a missing file: say which verifier and why
        raise UserError(f"cannot load the verifier {path}: {first_line(exc)}") from exc
