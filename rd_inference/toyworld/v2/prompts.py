"""World v2's prompt grammar, parser and disjoint train / tune / eval splits, named as GenEval names its tasks::

    single_object   a ring                                        (any colour)
    two_object      a ring and a cross                            (different shapes, any colours)
    counting        four black crosses                            (two | three | four | five)
    colors          a purple diamond
    position        a red circle left of a blue ring              (left of | right of | above | below)
    color_attr      a red square and a green triangle             (different colours and shapes)

Prompts are closed-world: an image satisfies a prompt when it shows exactly the objects named, no others.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from functools import cache

from rd_inference.toyworld.v2.world import COLOURS, PLURALS, SHAPES

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
SPLITS = ("train", "tune", "eval")
RELATIONS = ("left of", "right of", "above", "below")
COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5}
# Per task: eval gets max(40, 10%) of the prompts but never more than half; tune max(20, 5%) but never
# more than half of what is left; train the rest. The three small tasks (6, 30 and 36 prompts) cannot
# give 40 eval prompts; the bench balances tasks by drawing as many (prompt, seed) pairs from each.
_EVAL_MIN, _EVAL_SHARE, _TUNE_MIN, _TUNE_SHARE = 40, 0.10, 20, 0.05


class PromptError(ValueError):
    """A prompt outside the toy-world grammar."""


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str | None  # None: any colour


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt as the oracle reads it: the exact objects required and, for position, their relation.

    For position prompts ``objects[0]`` is the subject and ``objects[1]`` the reference:
    "A left of B" has ``objects == (A, B)`` and ``relation == "left of"``.
    """

    text: str
    task: str
    objects: tuple[ObjectSpec, ...]
    relation: str | None = None

    @property
    def skill(self) -> str:  # v1's name for the task, kept so callers of either world read one field
        return self.task


_C = "|".join(COLOURS)
_S = "|".join(SHAPES)
_P = "|".join(PLURALS.values())
_R = "|".join(RELATIONS)
_SINGULAR = {p: s for s, p in PLURALS.items()}
_PATTERNS = {
    "single_object": re.compile(rf"a ({_S})"),
    "two_object": re.compile(rf"a ({_S}) and a ({_S})"),
    "counting": re.compile(rf"({'|'.join(COUNTS)}) ({_C}) ({_P})"),
    "colors": re.compile(rf"a ({_C}) ({_S})"),
    "position": re.compile(rf"a ({_C}) ({_S}) ({_R}) a ({_C}) ({_S})"),
    "color_attr": re.compile(rf"a ({_C}) ({_S}) and a ({_C}) ({_S})"),
}


def normalise(text: str) -> str:
    """Lower-case, single spaces, no trailing full stop: the form prompts are stored and compared in."""
    return " ".join(text.lower().strip().rstrip(".").split())


def parse(text: str) -> ParsedPrompt:
    """Parse a prompt of the grammar; raise ``PromptError`` naming the templates for anything else.

    >>> parse("three red rings").objects[0]
    ObjectSpec(shape='ring', colour='red')
    """
    if not isinstance(text, str):
        raise PromptError(f"a prompt is text, got {type(text).__name__}")
    norm = normalise(text)
    for task, pattern in _PATTERNS.items():
        m = pattern.fullmatch(norm)
        if m is None:
            continue
        g = m.groups()
        if task == "single_object":
            return ParsedPrompt(norm, task, (ObjectSpec(g[0], None),))
        if task == "two_object":
            if g[0] != g[1]:
                return ParsedPrompt(norm, task, (ObjectSpec(g[0], None), ObjectSpec(g[1], None)))
        elif task == "counting":
            return ParsedPrompt(norm, task, (ObjectSpec(_SINGULAR[g[2]], g[1]),) * COUNTS[g[0]])
        elif task == "colors":
            return ParsedPrompt(norm, task, (ObjectSpec(g[1], g[0]),))
        elif task == "color_attr":
            a, b = ObjectSpec(g[1], g[0]), ObjectSpec(g[3], g[2])
            if a.colour != b.colour and a.shape != b.shape:
                return ParsedPrompt(norm, task, (a, b))
        else:
            a, b = ObjectSpec(g[1], g[0]), ObjectSpec(g[4], g[3])
            if a != b:
                return ParsedPrompt(norm, task, (a, b), relation=g[2])
        break  # a template matched but its constraint did not hold
    raise PromptError(
        f"{text!r} is not in the toy-world grammar. Colours: {', '.join(COLOURS)}; shapes: "
        f"{', '.join(SHAPES)}. Templates: 'a ring', 'a ring and a cross' (different shapes), "
        f"'four black crosses' ({' | '.join(COUNTS)}), 'a purple diamond', "
        f"'a red circle left of a blue ring' ({' | '.join(RELATIONS)}; different objects), "
        f"'a red square and a green triangle' (different colours and shapes)."
    )


@cache
def _all_by_task() -> dict[str, tuple[str, ...]]:
    pairs = list(itertools.product(COLOURS, SHAPES))
    return {
        "single_object": tuple(f"a {s}" for s in SHAPES),
        "two_object": tuple(f"a {s} and a {t}" for s, t in itertools.permutations(SHAPES, 2)),
        "counting": tuple(f"{n} {c} {PLURALS[s]}" for n in COUNTS for c, s in pairs),
        "colors": tuple(f"a {c} {s}" for c, s in pairs),
        "position": tuple(
            f"a {c} {s} {r} a {d} {t}" for (c, s), (d, t) in itertools.permutations(pairs, 2) for r in RELATIONS
        ),
        "color_attr": tuple(
            f"a {c} {s} and a {d} {t}" for (c, s), (d, t) in itertools.permutations(pairs, 2) if c != d and s != t
        ),
    }


def all_prompts(task: str | None = None) -> tuple[str, ...]:
    """Every prompt of the grammar (of one task, if given), in a fixed order."""
    table = _all_by_task()
    if task is None:
        return tuple(p for t in TASKS for p in table[t])
    if task not in table:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return table[task]


def split_sizes(n: int) -> tuple[int, int]:
    """(eval, tune) prompt counts for a task of ``n`` prompts; train gets the rest."""
    n_eval = min(-(-n // 2), max(_EVAL_MIN, round(n * _EVAL_SHARE)))
    n_tune = min((n - n_eval) // 2, max(_TUNE_MIN, round(n * _TUNE_SHARE)))
    return n_eval, n_tune


def split_table(by_task: dict[str, tuple[str, ...]], salt: str) -> dict[str, str]:
    """Each prompt's split. Per task, prompts are ordered by a hash of ``salt:prompt`` and cut: stable,
    exact sizes, and a prompt's split does not depend on which prompts other tasks have."""
    table: dict[str, str] = {}
    for ps in by_task.values():
        ordered = sorted(ps, key=lambda p: hashlib.sha256(f"{salt}:{p}".encode()).hexdigest())
        n_eval, n_tune = split_sizes(len(ordered))
        for i, p in enumerate(ordered):
            table[p] = "eval" if i < n_eval else "tune" if i < n_eval + n_tune else "train"
    return table


@cache
def _split_table() -> dict[str, str]:
    return split_table(_all_by_task(), "v2")


def split_of(prompt: str) -> str:
    """The split ("train", "tune" or "eval") a grammar prompt belongs to."""
    return _split_table()[parse(prompt).text]


def prompts(split: str, task: str | None = None) -> tuple[str, ...]:
    """The prompts of one split (and task, if given), in grammar order. The splits are disjoint."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    table = _split_table()
    return tuple(p for p in all_prompts(task) if table[p] == split)
