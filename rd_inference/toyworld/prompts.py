"""The toy world's prompt grammar, its parser, and the deterministic train / tune / eval split.

Five GenEval-style skills, each one template::

    single              a red circle
    two_objects         a circle and a square
    counting            two blue circles            (two | three)
    colour_attribution  a red square and a green circle
    position            a yellow triangle left of a blue square   (left of | right of | above | below)

Prompts are closed-world: an image satisfies a prompt when it shows exactly the objects named, no others.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from functools import cache

from rd_inference.toyworld.world import COLOURS, SHAPES

SKILLS = ("single", "two_objects", "counting", "colour_attribution", "position")
SPLITS = ("train", "tune", "eval")
RELATIONS = ("left of", "right of", "above", "below")
COUNTS = {"two": 2, "three": 3}
# Share of each skill's prompts per split; the rest of a skill goes to train.
_SPLIT_FRACTIONS = {"tune": 0.2, "eval": 0.2}


class PromptError(ValueError):
    """A prompt outside the toy-world grammar."""


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str | None  # None: any colour (two_objects prompts name shapes only)


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt as the oracle reads it: the exact objects required and, for position, their relation.

    For position prompts ``objects[0]`` is the subject and ``objects[1]`` the reference:
    "A left of B" has ``objects == (A, B)`` and ``relation == "left of"``.
    """

    text: str
    skill: str
    objects: tuple[ObjectSpec, ...]
    relation: str | None = None


_C = "|".join(COLOURS)
_S = "|".join(SHAPES)
_R = "|".join(RELATIONS)
_PATTERNS = {
    "single": re.compile(rf"a ({_C}) ({_S})"),
    "two_objects": re.compile(rf"a ({_S}) and a ({_S})"),
    "counting": re.compile(rf"({'|'.join(COUNTS)}) ({_C}) ({_S})s"),
    "colour_attribution": re.compile(rf"a ({_C}) ({_S}) and a ({_C}) ({_S})"),
    "position": re.compile(rf"a ({_C}) ({_S}) ({_R}) a ({_C}) ({_S})"),
}


def normalise(text: str) -> str:
    """Lower-case, single spaces, no trailing full stop: the form prompts are stored and compared in."""
    return " ".join(text.lower().strip().rstrip(".").split())


def parse(text: str) -> ParsedPrompt:
    """Parse a prompt of the grammar; raise ``PromptError`` naming the templates for anything else.

    >>> parse("two blue circles").objects
    (ObjectSpec(shape='circle', colour='blue'), ObjectSpec(shape='circle', colour='blue'))
    """
    norm = normalise(text)
    for skill, pattern in _PATTERNS.items():
        m = pattern.fullmatch(norm)
        if m is None:
            continue
        g = m.groups()
        if skill == "single":
            return ParsedPrompt(norm, skill, (ObjectSpec(g[1], g[0]),))
        if skill == "two_objects":
            if g[0] != g[1]:
                return ParsedPrompt(norm, skill, (ObjectSpec(g[0], None), ObjectSpec(g[1], None)))
        elif skill == "counting":
            return ParsedPrompt(norm, skill, (ObjectSpec(g[2], g[1]),) * COUNTS[g[0]])
        elif skill == "colour_attribution":
            a, b = ObjectSpec(g[1], g[0]), ObjectSpec(g[3], g[2])
            if a.colour != b.colour and a.shape != b.shape:
                return ParsedPrompt(norm, skill, (a, b))
        else:
            a, b = ObjectSpec(g[1], g[0]), ObjectSpec(g[4], g[3])
            if a != b:
                return ParsedPrompt(norm, skill, (a, b), relation=g[2])
        break  # a template matched but its constraint did not hold
    raise PromptError(
        f"{text!r} is not in the toy-world grammar. Colours: {', '.join(COLOURS)}; shapes: "
        f"{', '.join(SHAPES)}. Templates: 'a red circle', 'a circle and a square' (different shapes), "
        f"'two blue circles' (two|three), 'a red square and a green circle' (different colours and "
        f"shapes), 'a yellow triangle left of a blue square' ({' | '.join(RELATIONS)}; different objects)."
    )


@cache
def _all_by_skill() -> dict[str, tuple[str, ...]]:
    pairs = list(itertools.product(COLOURS, SHAPES))
    out = {
        "single": tuple(f"a {c} {s}" for c, s in pairs),
        "two_objects": tuple(f"a {s} and a {t}" for s, t in itertools.permutations(SHAPES, 2)),
        "counting": tuple(f"{n} {c} {s}s" for n in COUNTS for c, s in pairs),
        "colour_attribution": tuple(
            f"a {c} {s} and a {d} {t}" for (c, s), (d, t) in itertools.permutations(pairs, 2)
            if c != d and s != t
        ),
        "position": tuple(
            f"a {c} {s} {r} a {d} {t}" for (c, s), (d, t) in itertools.permutations(pairs, 2) for r in RELATIONS
        ),
    }
    return out


def all_prompts(skill: str | None = None) -> tuple[str, ...]:
    """Every prompt of the grammar (of one skill, if given), in a fixed order."""
    table = _all_by_skill()
    if skill is None:
        return tuple(p for s in SKILLS for p in table[s])
    if skill not in table:
        raise ValueError(f"unknown skill {skill!r}; known: {', '.join(SKILLS)}")
    return table[skill]


def _digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()


@cache
def _split_table() -> dict[str, str]:
    # Per skill, order prompts by a content hash and cut: stable, exact proportions, and a prompt's
    # split does not depend on which other prompts exist in other skills.
    table: dict[str, str] = {}
    for skill in SKILLS:
        ordered = sorted(all_prompts(skill), key=_digest)
        n = len(ordered)
        n_eval = max(1, round(n * _SPLIT_FRACTIONS["eval"]))
        n_tune = max(1, round(n * _SPLIT_FRACTIONS["tune"]))
        for i, p in enumerate(ordered):
            table[p] = "eval" if i < n_eval else "tune" if i < n_eval + n_tune else "train"
    return table


def split_of(prompt: str) -> str:
    """The split ("train", "tune" or "eval") a grammar prompt belongs to."""
    return _split_table()[parse(prompt).text]


def prompts(split: str, skill: str | None = None) -> tuple[str, ...]:
    """The prompts of one split (and skill, if given), in grammar order. The splits are disjoint."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    table = _split_table()
    return tuple(p for p in all_prompts(skill) if table[p] == split)


def spread(items: tuple[str, ...], k: int) -> list[str]:
    """``k`` items evenly spread over a sequence (deterministic); all of them when ``k >= len(items)``."""
    if k >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(k - 1, 1))] for i in range(k)]


def skill_of(prompt: str) -> str:
    return parse(prompt).skill
