"""The shapes world: palette, shapes, scenes, a seeded scene sampler and an exact (aliased) renderer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32
BACKGROUND = (255, 255, 255)
# Well separated in RGB (smallest pairwise distance ~120) so nearest-palette labelling is unambiguous.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (150, 60, 190),
}
SHAPES = ("circle", "square", "triangle")
# Half-extent in pixels; an object covers a (2r+1)-pixel box. Three-object scenes use the small end.
RADII = (3, 4, 5, 6)
RADII_CROWDED = (3, 4)
MARGIN = 1  # pixels kept free at the image border
GAP = 2  # minimum free pixels between two objects' boxes, so they never touch


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    cx: int
    cy: int
    r: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]


def render(scene: Scene, size: int = SIZE, supersample: int = 1) -> Image.Image:
    """Draw a scene. With ``supersample=1`` (the default) there is no anti-aliasing, so every pixel is
    the background or one palette colour; ``supersample=k`` draws k times larger and box-filters down."""
    if supersample > 1:
        big = Scene(tuple(SceneObject(o.shape, o.colour, o.cx * supersample + supersample // 2,
                                      o.cy * supersample + supersample // 2, o.r * supersample + supersample // 2)
                          for o in scene.objects))
        return render(big, size * supersample).resize((size, size), Image.BOX)
    im = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(im)
    for o in scene.objects:
        x0, y0, x1, y1 = o.box
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif o.shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif o.shape == "triangle":
            draw.polygon([(o.cx, y0), (x0, y1), (x1, y1)], fill=fill)
        else:
            raise ValueError(f"unknown shape {o.shape!r}; known: {', '.join(SHAPES)}")
    return im


def _separated(a: SceneObject, b: SceneObject) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return bx0 - ax1 > GAP or ax0 - bx1 > GAP or by0 - ay1 > GAP or ay0 - by1 > GAP


def _relation_holds(a: SceneObject, b: SceneObject, relation: str) -> bool:
    # Rendered relations are unambiguous: clearly apart along the named axis, and more apart along it
    # than across it. (The oracle's test is looser; see oracle.RELATION_MARGIN.)
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if relation in ("left of", "right of"):
        along, across = (dx if relation == "left of" else -dx), abs(dy)
    else:
        along, across = (dy if relation == "above" else -dy), abs(dx)
    return along >= a.r + b.r + GAP + 1 and across <= along


def place(specs: list[tuple[str, str]], rng: np.random.Generator, size: int = SIZE,
          relation: str | None = None, tries: int = 1000) -> Scene:
    """Place (shape, colour) objects at random non-touching positions; ``relation`` applies to the first two."""
    radii = RADII_CROWDED if len(specs) > 2 else RADII
    for _ in range(tries):
        objs: list[SceneObject] = []
        for shape, colour in specs:
            r = int(rng.choice(radii))
            lo, hi = MARGIN + r, size - 1 - MARGIN - r
            o = SceneObject(shape, colour, int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)), r)
            if not all(_separated(o, p) for p in objs):
                break
            objs.append(o)
        else:
            if relation is None or _relation_holds(objs[0], objs[1], relation):
                return Scene(tuple(objs))
    raise RuntimeError(f"could not place {specs} with relation {relation!r} in {tries} tries")


def sample_scene(prompt: str, rng: np.random.Generator) -> Scene:
    """A random scene that satisfies ``prompt`` exactly (free colours of two_objects prompts drawn at random).

    >>> render(sample_scene("two blue circles", np.random.default_rng(0))).size
    (32, 32)
    """
    from rd_inference.toyworld.prompts import parse  # prompts imports this module's palette

    parsed = parse(prompt)
    colours = list(COLOURS)
    specs = [(o.shape, o.colour if o.colour is not None else str(rng.choice(colours))) for o in parsed.objects]
    return place(specs, rng, relation=parsed.relation)
