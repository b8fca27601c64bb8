"""Turn a command-line ``--verifier`` value into a verifier."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .checks import UserError, check_criteria, check_verifier_source, first_line
from .verifiers import BrightnessVerifier, ColorVerifier, Verifier


def default_verifier_path() -> Path:
    path = Path(__file__).parent / "toyworld" / "weights" / "v2" / "verifier"  # toy world v2
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no embedded default verifier at {path}; pass --verifier")
    return path


# KIND:TARGET names; a name without a known kind is a VLM folder or hub id (as before kinds existed).
KINDS = {
    "vlm": "a yes-token VLM folder or hub id (the default kind)",
    "clip": "CLIP score of a dual encoder (CLIP, SigLIP) folder or hub id",
    "pickscore": "PickScore (a CLIP checkpoint) folder or hub id",
    "aesthetic": ("LAION aesthetic score (~1-10, ignores the prompt) of a folder made by python -m "
                  "rd_inference.verifiers.aesthetic convert; weight it ~0.1 in a mean ensemble"),
    "openai": "URL#MODEL of an OpenAI-compatible server that returns logprobs (vLLM, SGLang)",
    "color": "R,G,B in [0,1]: closeness of the mean colour (tests, sanity checks)",
    "brightness": "mean brightness (no target; tests, sanity checks)",
}
# Kinds whose verifier compares two images (``compare()``), which --final-pick tournament needs.
PAIRWISE_KINDS = ("vlm",)
# Kinds that ask the criteria's questions (the others score without any: --criteria would do nothing).
CRITERIA_KINDS = ("vlm", "openai")
VERIFIER_HELP = ("a verifier as KIND:TARGET, or several joined by '+' (an ensemble; '@W' after one weights it): "
                 + "; ".join(f"{k}: {v}" for k, v in KINDS.items())
                 + ". A bare folder or hub id is a VLM. Default: the embedded toy VLM")


def parse_verifier(spec: str) -> list[tuple[str, str, float]]:
    """``"vlm:A@0.7+clip:B@0.3"`` -> [("vlm", "A", 0.7), ("clip", "B", 0.3)]; each part checked (names,
    weights, local folders) before anything loads."""
    parts = []
    for part in spec.split("+"):
        part, weight = part.strip(), 1.0
        if "@" in part:
            head, tail = part.rsplit("@", 1)
            try:
                part, weight = head, float(tail)
            except ValueError:
                pass  # an "@" that is part of a path or id
            if not weight > 0:
                raise UserError(f"verifier weight in {spec!r} must be a positive number, got {tail!r}")
        kind, colon, target = part.partition(":")
        if part == "brightness":
            kind, target = "brightness", ""
        elif not part or (kind in KINDS and colon and not target):
            raise UserError(f"empty verifier in {spec!r}: write KIND:TARGET, e.g. clip:PATH or vlm:PATH")
        elif colon and kind not in KINDS and _looks_like_kind(kind, part):
            raise UserError(f"unknown verifier kind {kind!r} in {spec!r}; known: {', '.join(KINDS)}. Write "
                            "KIND:TARGET (e.g. clip:PATH, vlm:org/name), or a bare VLM folder or hub id")
        elif not colon and part in KINDS and not os.path.exists(os.path.expanduser(part)):
            raise UserError(f"--verifier {part} names a kind without its target: write {part}:TARGET "
                            f"({part}: {KINDS[part]})")
        elif kind not in KINDS or not colon:
            kind, target = "vlm", part
        if kind in ("vlm", "clip", "pickscore"):
            check_verifier_source(target)
        if kind == "aesthetic":
            from .verifiers.aesthetic import check_aesthetic_folder

            check_aesthetic_folder(target)
        if kind == "color":
            _colour(target)
        if kind == "openai" and (not target.startswith(("http://", "https://")) or "#" not in target):
            raise UserError(f"write a served verifier as openai:URL#MODEL (e.g. openai:http://127.0.0.1:8000#org/vlm), "
                            f"got {part!r}")
        parts.append((kind, target, weight))
    return parts


def _looks_like_kind(kind: str, part: str) -> bool:
    """``foo:bar`` names a kind: a word of two or more letters, digits, '_' or '-' before the colon (one
    letter is a Windows drive, ``C:\\models``), unless ``part`` is a path that exists (an existing folder
    with ':' in its name is a VLM folder)."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]+", kind)) and not os.path.exists(os.path.expanduser(part))


def check_criteria_use(spec: str | None, criteria: str | None) -> None:
    """Refuse ``--criteria`` with a verifier that asks no questions (CLIP, aesthetic, simple verifiers),
    where it would silently do nothing."""
    if criteria is None or spec is None:
        return
    if not any(kind in CRITERIA_KINDS for kind, _, _ in parse_verifier(spec)):
        raise UserError(f"--criteria {criteria} has no effect with --verifier {spec}: criteria are the questions a "
                        f"VLM verifier ({', '.join(k + ':' for k in CRITERIA_KINDS)}) answers; drop --criteria or "
                        "use a VLM verifier")


def supports_pairwise(spec: str | None) -> bool:
    """Whether the verifier ``spec`` names compares pairs of images (``compare()``), from its kind alone:
    one member of a kind in ``PAIRWISE_KINDS``; None is the embedded toy VLM, which does."""
    if spec is None:
        return True
    parts = parse_verifier(spec)
    return len(parts) == 1 and parts[0][0] in PAIRWISE_KINDS


def check_pairwise(spec: str | None, what: str = "--final-pick tournament") -> None:
    """Refuse, before anything loads, a pairwise pick with a verifier whose kind cannot compare pairs."""
    if not supports_pairwise(spec):
        raise UserError(f"{what} needs a verifier that compares two images (one of kind {', '.join(PAIRWISE_KINDS)}: "
                        f"vlm:PATH or a bare VLM folder or hub id); --verifier {spec} cannot: use --final-pick "
                        "score, or a VLM verifier")


def load_verifier(spec: str | None, *, device: str | None = None, quantization: str | None = None,
                  criteria: str | None = None, offload: bool = False, attention: str | None = None,
                  compile: bool = False, aggregation: str = "mean") -> Verifier:
    """A verifier from its name (see ``VERIFIER_HELP``): ``brightness``, ``color:R,G,B``, ``vlm:PATH`` (or a
    bare VLM folder / hub id), ``clip:PATH``, ``pickscore:PATH``, ``aesthetic:PATH``, ensembles ``A+B`` (``@W``
    weights a member, ``aggregation`` "mean" or "rank"), or None for the embedded toy VLM. ``quantization``,
    ``criteria``, ``offload``, ``attention`` and ``compile`` apply to a VLM (see
    :mod:`rd_inference.speed_options`)."""
    if spec is None:
        spec = str(default_verifier_path())
    parts = parse_verifier(spec)
    check_criteria(criteria, "criteria")  # read before any member loads
    vlm = {"device": device, "quantization": quantization, "criteria": criteria, "offload": offload,
           "attention": attention, "compile": compile}
    members = [_load_one(kind, target, vlm) for kind, target, _ in parts]
    if len(members) == 1:
        return members[0]
    from .verifiers.ensemble import EnsembleVerifier

    return EnsembleVerifier(members, [w for _, _, w in parts], aggregation)


def _colour(target: str) -> tuple[float, ...]:
    try:
        rgb = tuple(float(v) for v in target.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 1 for v in rgb):
        raise UserError(f"--verifier color:{target}: write a colour as color:R,G,B with three numbers in [0,1]")
    return rgb


def _load_one(kind: str, target: str, vlm: dict) -> Verifier:
    if kind == "brightness":
        return BrightnessVerifier()
    if kind == "color":
        return ColorVerifier(_colour(target))
    if kind == "openai":
        from .verifiers.remote import from_name

        return from_name(target, criteria=vlm["criteria"])
    if kind in ("clip", "pickscore"):
        from .verifiers.clip import ClipScoreVerifier

        scorer = ClipScoreVerifier(target, kind=kind, device=vlm["device"])
        scorer._ensure_loaded()  # load now, so a broken folder fails before the search starts
        return scorer
    if kind == "aesthetic":
        from .verifiers.aesthetic import AestheticVerifier

        scorer = AestheticVerifier(target, device=vlm["device"])
        scorer._ensure_loaded()
        return scorer
    from .yes_token import YesTokenVerifier

    kwargs = {"device": vlm["device"], "offload": vlm["offload"], "attn_implementation": vlm["attention"],
              "compile": vlm["compile"]}
    if vlm["quantization"] not in (None, "none"):
        kwargs["quantization"] = vlm["quantization"]
    if vlm["criteria"] is not None:
        kwargs["criteria"] = vlm["criteria"]
    try:
        return YesTokenVerifier.from_pretrained(target, **kwargs)
    except OSError as exc:  # not on the hub, no network, a missing file: say which verifier and why
        raise UserError(f"cannot load the verifier {target}: {first_line(exc)}") from exc
