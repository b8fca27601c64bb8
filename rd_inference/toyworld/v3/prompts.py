"""World v3's prompt grammar: GenEval's six tasks, as in v2, with two made harder::

    single_object   a ring                                        (any colour)
    two_object      a ring and a cross                            (different shapes, any colours)
    counting        six black crosses                             (two | three | four | five | six)
    colors          a purple diamond
    position        a red circle left of a blue ring              (left of | right of | above | below)
    color_attr      a red square and a green triangle             (different colours and shapes)
                    a red square and a green triangle and a blue ring      (three: any order)

Three-object colour binding and counts of five and six are what the v2 generator could not yet be
asked for; they give the benchmark prompts a small generator rarely gets right. Prompts are
closed-world, and the splits are disjoint and cut per task as v2 cuts them (salted "v3").
"""

from __future__ import annotations

import itertools
import re
from functools import cache

from rd_inference.toyworld.v2.prompts import (
    RELATIONS,
    SPLITS,
    TASKS,
    ObjectSpec,
    ParsedPrompt,
    PromptError,
    normalise,
    split_table,
)
from rd_inference.toyworld.v3.world import COLOURS, PLURALS, SHAPES

__all__ = ["COUNTS", "RELATIONS", "SPLITS", "TASKS", "ObjectSpec", "ParsedPrompt", "PromptError", "all_prompts",
           "parse", "prompts", "split_of"]

COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}

_C = "|".join(COLOURS)
_S = "|".join(SHAPES)
_P = "|".join(PLURALS.values())
_R = "|".join(RELATIONS)
_CS = rf"a ({_C}) ({_S})"
_SINGULAR = {p: s for s, p in PLURALS.items()}
_PATTERNS = {
    "single_object": re.compile(rf"a ({_S})"),
    "two_object": re.compile(rf"a ({_S}) and a ({_S})"),
    "counting": re.compile(rf"({'|'.join(COUNTS)}) ({_C}) ({_P})"),
    "colors": re.compile(_CS),
    "position": re.compile(rf"{_CS} ({_R}) {_CS}"),
    "color_attr": re.compile(rf"{_CS} and {_CS}(?: and {_CS})?"),
}


def parse(text: str) -> ParsedPrompt:
    """Parse a prompt of the grammar; raise ``PromptError`` naming the templates for anything else.

    >>> len(parse("six red rings").objects)
    6
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
            objs = tuple(ObjectSpec(s, c) for c, s in zip(g[::2], g[1::2]) if c is not None)
            if len({o.colour for o in objs}) == len(objs) == len({o.shape for o in objs}):
                return ParsedPrompt(norm, task, objs)
        else:
            a, b = ObjectSpec(g[1], g[0]), ObjectSpec(g[4], g[3])
            if a != b:
                return ParsedPrompt(norm, task, (a, b), relation=g[2])
        break  # a template matched but its constraint did not hold
    raise PromptError(
        f"{text!r} is not in the toy-world v3 grammar. Colours: {', '.join(COLOURS)}; shapes: "
        f"{', '.join(SHAPES)}. Templates: 'a ring', 'a ring and a cross' (different shapes), "
        f"'six black crosses' ({' | '.join(COUNTS)}), 'a purple diamond', "
        f"'a red circle left of a blue ring' ({' | '.join(RELATIONS)}; different objects), "
        f"'a red square and a green triangle' or '... and a blue ring' (different colours and shapes)."
    )


def _phrase(objs) -> str:
    return " and ".join(f"a {c} {s}" for c, s in objs)


@cache
def _all_by_task() -> dict[str, tuple[str, ...]]:
    pairs = list(itertools.product(COLOURS, SHAPES))
    # Three-object colour prompts in one order (shapes in SHAPES order): 2,400 prompts rather than
    # 14,400 word orders of the same scenes; parse and split_of accept any order.
    triples = [tuple(zip(cs, ss)) for ss in itertools.combinations(SHAPES, 3)
               for cs in itertools.permutations(COLOURS, 3)]
    return {
        "single_object": tuple(f"a {s}" for s in SHAPES),
        "two_object": tuple(f"a {s} and a {t}" for s, t in itertools.permutations(SHAPES, 2)),
        "counting": tuple(f"{n} {c} {PLURALS[s]}" for n in COUNTS for c, s in pairs),
        "colors": tuple(f"a {c} {s}" for c, s in pairs),
        "position": tuple(
            f"a {c} {s} {r} a {d} {t}" for (c, s), (d, t) in itertools.permutations(pairs, 2) for r in RELATIONS
        ),
        "color_attr": tuple(
            _phrase(p) for p in itertools.permutations(pairs, 2) if p[0][0] != p[1][0] and p[0][1] != p[1][1]
        ) + tuple(_phrase(t) for t in triples),
    }


def all_prompts(task: str | None = None) -> tuple[str, ...]:
    """Every prompt of the grammar (of one task, if given), in a fixed order."""
    table = _all_by_task()
    if task is None:
        return tuple(p for t in TASKS for p in table[t])
    if task not in table:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return table[task]


@cache
def _split_table() -> dict[str, str]:
    return split_table(_all_by_task(), "v3")


def _canonical(parsed: ParsedPrompt) -> str:
    if parsed.task == "color_attr" and len(parsed.objects) == 3:
        return _phrase((o.colour, o.shape) for o in sorted(parsed.objects, key=lambda o: SHAPES.index(o.shape)))
    return parsed.text


def split_of(prompt: str) -> str:
    """The split ("train", "tune" or "eval") a grammar prompt belongs to (any word order of its objects)."""
    return _split_table()[_canonical(parse(prompt))]


def prompts(split: str, task: str | None = None) -> tuple[str, ...]:
    """The prompts of one split (and task, if given), in grammar order. The splits are disjoint."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    table = _split_table()
    return tuple(p for p in all_prompts(task) if table[p] == split)
