"""Task-aware instructions for the yes-token verifier, kept as data.

A *criterion* is a yes/no question about an image with a ``{prompt}`` placeholder for the text the image
was generated from. The built-in ones ship in ``rd_inference/data/criteria.json``; users add their own
in a file of the same format (JSON, or TOML on Python >= 3.11)::

    {"format": "rd_inference.criteria/1",
     "criteria": [{"name": "red_things", "weight": 2.0,
                   "template": "Prompt: \\"{prompt}\\". Is everything red? Answer yes or no."}],
     "pairwise": [{"name": "my_pairwise",
                   "template": "Prompt: \\"{prompt}\\". Is image 2 better than image 1? Answer yes or no."}]}

``name`` and ``template`` are required, ``weight`` (default 1) and ``description`` optional. ``pairwise``
templates are shown two images (image 1, then image 2) and must ask whether image 2 is better.

The ``VIDEO_CRITERIA`` ask about a video as a whole; they are meant for a video's frames shown together in
one prompt (:class:`rd_inference.video.FrameSampledVerifier`'s ``frames="joint"``, where each question
follows a line saying the images are frames of one video, in order).

Several criteria at once form an ensemble: :func:`aggregate` combines their probabilities by weighted
mean, or by weighted mean rank (which no single criterion can dominate by being over-confident).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

FORMAT = "rd_inference.criteria/1"
PLACEHOLDER = "{prompt}"
DEFAULT_CRITERION = "alignment"
DEFAULT_PAIRWISE = "pairwise_alignment"
AGGREGATIONS = ("mean", "rank")
VIDEO_CRITERIA = ("video_alignment", "temporal_consistency", "motion")  # for frames shown together


@dataclass(frozen=True)
class Criterion:
    """A yes/no question template; ``render(prompt)`` fills in ``{prompt}``."""

    name: str
    template: str
    weight: float = 1.0
    description: str = ""

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a criterion needs a non-empty name, got {self.name!r}")
        if not isinstance(self.template, str) or PLACEHOLDER not in self.template:
            raise ValueError(
                f"criterion {self.name!r}: the template must contain {PLACEHOLDER} "
                f"(where the image's prompt goes), got {self.template!r}"
            )
        if not float(self.weight) >= 0.0:
            raise ValueError(f"criterion {self.name!r}: weight must be >= 0, got {self.weight!r}")
        object.__setattr__(self, "weight", float(self.weight))

    def render(self, prompt: str) -> str:
        # str.replace, not str.format: user templates may contain other braces (JSON examples, ...).
        return self.template.replace(PLACEHOLDER, prompt)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse(data: Mapping[str, Any], source: str) -> tuple[dict[str, Criterion], dict[str, Criterion]]:
    if data.get("format", FORMAT) != FORMAT:
        raise ValueError(f"{source}: unknown criteria format {data.get('format')!r}; expected {FORMAT!r}")
    unknown = set(data) - {"format", "criteria", "pairwise"}
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}; expected 'criteria' and/or 'pairwise'")
    out: tuple[dict[str, Criterion], dict[str, Criterion]] = ({}, {})
    for key, table in zip(("criteria", "pairwise"), out):
        for entry in data.get(key, []):
            if not isinstance(entry, Mapping) or "name" not in entry or "template" not in entry:
                raise ValueError(
                    f"{source}: each entry of {key!r} needs 'name' and 'template', got {entry!r}"
                )
            extra = set(entry) - {"name", "template", "weight", "description"}
            if extra:
                raise ValueError(f"{source}: criterion {entry['name']!r} has unknown keys {sorted(extra)}")
            if entry["name"] in table:
                raise ValueError(f"{source}: criterion {entry['name']!r} is defined twice")
            table[entry["name"]] = Criterion(**entry)
    return out


def load_criteria_file(path: str | Path) -> tuple[dict[str, Criterion], dict[str, Criterion]]:
    """Read a criteria file (``.json`` or ``.toml``); returns (pointwise, pairwise) criteria by name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"criteria file not found: {path}")
    if path.suffix == ".toml":
        if sys.version_info < (3, 11):
            raise ValueError(f"{path}: TOML criteria files need Python >= 3.11 (tomllib); use JSON")
        import tomllib

        data = tomllib.loads(path.read_text(encoding="utf-8"))
    elif path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
    else:
        raise ValueError(f"{path}: a criteria file must end in .json or .toml")
    return _parse(data, str(path))


def builtin_criteria() -> dict[str, Criterion]:
    """The shipped pointwise criteria by name: alignment and its four parts, quality, plausibility, aesthetics,
    and the ``VIDEO_CRITERIA`` (prompt alignment across frames, temporal consistency, motion)."""
    return _builtins()[0]


def builtin_pairwise() -> dict[str, Criterion]:
    """The shipped pairwise templates by name."""
    return _builtins()[1]


def _builtins() -> tuple[dict[str, Criterion], dict[str, Criterion]]:
    text = resources.files("rd_inference").joinpath("data/criteria.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), "rd_inference/data/criteria.json")


def _lookup(name: str, table: Mapping[str, Criterion], kind: str) -> Criterion:
    if name not in table:
        raise ValueError(f"unknown {kind} criterion {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def resolve_criteria(spec: Any = None, *, pairwise: bool = False) -> tuple[Criterion, ...]:
    """Turn a user's criteria choice into a tuple of :class:`Criterion`.

    ``spec`` may be None (the default criterion), a :class:`Criterion`, a dict ``{name, template, ...}``,
    a ``{name: weight}`` mapping of built-in names, or a string of comma-separated items, each a built-in
    name with an optional ``:weight`` or a path to a criteria file (all its criteria); or a list of these.

    Example:
        >>> [c.name for c in resolve_criteria("alignment,aesthetics:0.5")]
        ['alignment', 'aesthetics']
    """
    table = builtin_pairwise() if pairwise else builtin_criteria()
    kind = "pairwise" if pairwise else "pointwise"
    if spec is None:
        spec = DEFAULT_PAIRWISE if pairwise else DEFAULT_CRITERION
    items: list[Criterion] = []

    def add(item: Any) -> None:
        if isinstance(item, Criterion):
            items.append(item)
        elif isinstance(item, Mapping) and "template" in item:
            items.append(Criterion(**item))
        elif isinstance(item, Mapping):
            for name, weight in item.items():
                base = _lookup(name, table, kind)
                items.append(Criterion(base.name, base.template, weight, base.description))
        elif isinstance(item, str):
            for part in (p.strip() for p in item.split(",")):
                if not part:
                    continue
                if part.endswith((".json", ".toml")):
                    loaded = load_criteria_file(part)[1 if pairwise else 0]
                    if not loaded:
                        raise ValueError(f"{part}: no {kind} criteria in this file")
                    items.extend(loaded.values())
                    continue
                name, _, weight = part.partition(":")
                base = _lookup(name.strip(), table, kind)
                try:
                    w = float(weight) if weight else base.weight
                except ValueError:
                    raise ValueError(f"criterion weight must be a number: {part!r}") from None
                items.append(Criterion(base.name, base.template, w, base.description))
        else:
            raise TypeError(f"cannot read a criterion from {type(item).__name__}: {item!r}")

    if isinstance(spec, (str, Mapping, Criterion)):
        add(spec)
    elif isinstance(spec, Sequence):
        for item in spec:
            add(item)
    else:
        raise TypeError(f"criteria must be a name, file, mapping or list, got {type(spec).__name__}")
    if not items:
        raise ValueError("no criteria given")
    names = [c.name for c in items]
    if len(set(names)) != len(names):
        raise ValueError(f"criteria names must be unique, got {names}")
    if sum(c.weight for c in items) <= 0:
        raise ValueError("criteria weights must not all be zero")
    return tuple(items)


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor (ties share their mean rank)."""
    n = x.shape[0]
    order = torch.argsort(x, stable=True)
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = torch.arange(n, dtype=torch.float64)
    for v in torch.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def aggregate(probs: torch.Tensor, weights: Sequence[float], method: str = "mean") -> torch.Tensor:
    """Combine per-criterion probabilities ``probs`` [B, C] into one score per image [B].

    ``mean``: weighted mean of the probabilities (independent of the other images in the batch).
    ``rank``: weighted mean of each criterion's rank among the B images, scaled to [0, 1] (a single image
    gets 0.5). Rank aggregation depends on the whole batch, so scores of different calls don't compare.
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; known: {', '.join(AGGREGATIONS)}")
    w = torch.as_tensor(list(weights), dtype=torch.float64)
    if probs.ndim != 2 or probs.shape[1] != w.shape[0]:
        raise ValueError(f"expected probabilities [B, {w.shape[0]}], got {tuple(probs.shape)}")
    w = w / w.sum()
    p = probs.double()
    if method == "rank":
        b = p.shape[0]
        if b == 1:
            p = torch.full_like(p, 0.5)
        else:
            p = torch.stack([_average_ranks(p[:, j]) for j in range(p.shape[1])], dim=1) / (b - 1)
    return (p * w).sum(dim=1).to(probs.dtype)
