"""World v2: a 48x48 shapes world with six colours, six shapes and scenes of up to five objects.

Made harder than v1 (32x32, three shapes, at most three objects) so that test-time search has room
to separate strategies: more shapes to confuse (a diamond is a square turned, a ring a circle with a
hole, a cross a square with its corners cut), counts up to five, and relations that must dominate.
The renderer is exact: with ``supersample=1`` every pixel is the background or one palette colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 48
BACKGROUND = (255, 255, 255)
# Well separated in RGB (smallest pairwise distance ~120); black's blends with the background are
# greys, which no other colour's are, so nearest-segment labelling stays unambiguous.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (150, 60, 190),
    "black": (30, 30, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
PLURALS = {s: ("crosses" if s == "cross" else s + "s") for s in SHAPES}
# Half-extent in pixels; an object covers a (2r+1)-pixel box. Scenes of three or more objects use the
# small end. The smallest radius is 5: the pipeline's autoencoder (4x downsampling) gave back only half
# of the radius-4 shapes the oracle could name (a ring's hole, a cross's arms and a diamond's corners
# are one or two latent pixels), against 83-95% from radius 5 up.
RADII = (5, 6, 7, 8, 9)
RADII_CROWDED = (5, 6)
MARGIN = 1  # pixels kept free at the image border
GAP = 2  # minimum free pixels between two objects' boxes, so they never touch
# Rendered relations are unambiguous: along the named axis at least twice as far apart as across it.
RELATION_DOMINANCE = 2.0


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


def cross_arm(r: int) -> int:
    """Half-width of a cross's arms (the arms are ``2a+1`` pixels wide, about a third of the box)."""
    return max(1, round((2 * r + 1) / 6))


def ring_width(r: int) -> int:
    """Thickness of a ring's band; the hole keeps at least 5 pixels across at the smallest radius."""
    return max(2, round(r * 0.45))  # linear, so supersampled renders keep the band's width


def draw_object(draw: ImageDraw.ImageDraw, o: SceneObject, fill: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = o.box
    if o.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif o.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif o.shape == "triangle":
        draw.polygon([(o.cx, y0), (x0, y1), (x1, y1)], fill=fill)
    elif o.shape == "diamond":
        draw.polygon([(o.cx, y0), (x1, o.cy), (o.cx, y1), (x0, o.cy)], fill=fill)
    elif o.shape == "cross":
        a = cross_arm(o.r)
        draw.rectangle((x0, o.cy - a, x1, o.cy + a), fill=fill)
        draw.rectangle((o.cx - a, y0, o.cx + a, y1), fill=fill)
    elif o.shape == "ring":
        draw.ellipse((x0, y0, x1, y1), outline=fill, width=ring_width(o.r))
    else:
        raise ValueError(f"unknown shape {o.shape!r}; known: {', '.join(SHAPES)}")


def render(scene: Scene, size: int = SIZE, supersample: int = 1) -> Image.Image:
    """Draw a scene. With ``supersample=1`` (the default) there is no anti-aliasing, so every pixel is
    the background or one palette colour; ``supersample=k`` draws k times larger and box-filters down."""
    if supersample > 1:
        k = supersample
        big = Scene(tuple(SceneObject(o.shape, o.colour, o.cx * k + k // 2, o.cy * k + k // 2, o.r * k + k // 2)
                          for o in scene.objects))
        return render(big, size * k).resize((size, size), Image.BOX)
    im = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(im)
    for o in scene.objects:
        draw_object(draw, o, COLOURS[o.colour])
    return im


def _separated(a: SceneObject, b: SceneObject) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return bx0 - ax1 > GAP or ax0 - bx1 > GAP or by0 - ay1 > GAP or ay0 - by1 > GAP


def relation_offsets(dx: float, dy: float, relation: str) -> tuple[float, float]:
    """(along, across): how far the subject is from the reference in the named direction, and across it.

    ``dx, dy`` is the reference's centre minus the subject's ("A left of B": B is to the right, dx > 0).
    """
    if relation == "left of":
        return dx, abs(dy)
    if relation == "right of":
        return -dx, abs(dy)
    if relation == "above":
        return dy, abs(dx)
    if relation == "below":
        return -dy, abs(dx)
    raise ValueError(f"unknown relation {relation!r}")


def _relation_holds(a: SceneObject, b: SceneObject, relation: str) -> bool:
    along, across = relation_offsets(b.cx - a.cx, b.cy - a.cy, relation)
    return along >= a.r + b.r + GAP + 1 and across * RELATION_DOMINANCE <= along


def place(specs: list[tuple[str, str]], rng: np.random.Generator, size: int = SIZE,
          relation: str | None = None, tries: int = 2000,
          radii: tuple[tuple[int, ...], tuple[int, ...]] = (RADII, RADII_CROWDED)) -> Scene:
    """Place (shape, colour) objects at random non-touching positions; ``relation`` applies to the first two.
    ``radii`` holds the radii drawn for scenes of one or two objects and for crowded scenes.

    Objects go in one at a time, each with up to 50 draws against those already placed (drawing all
    five at once and rejecting the scene rarely succeeds); a scene that gets stuck starts again.
    """
    radii = radii[1] if len(specs) > 2 else radii[0]
    for _ in range(tries):
        objs: list[SceneObject] = []
        for k, (shape, colour) in enumerate(specs):
            for _ in range(50):
                r = int(rng.choice(radii))
                lo, hi = MARGIN + r, size - 1 - MARGIN - r
                o = SceneObject(shape, colour, int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)), r)
                if all(_separated(o, p) for p in objs) and (
                        k != 1 or relation is None or _relation_holds(objs[0], o, relation)):
                    objs.append(o)
                    break
            else:
                break
        if len(objs) == len(specs):
            return Scene(tuple(objs))
    raise RuntimeError(f"could not place {specs} with relation {relation!r} in {tries} tries")


def sample_scene(prompt: str, rng: np.random.Generator) -> Scene:
    """A random scene that satisfies ``prompt`` exactly (colours the prompt leaves free drawn at random).

    >>> render(sample_scene("four black crosses", np.random.default_rng(0))).size
    (48, 48)
    """
    from rd_inference.toyworld.v2.prompts import parse  # prompts imports this module's palette

    return scene_for(parse(prompt), rng)


def scene_for(parsed, rng: np.random.Generator, size: int = SIZE,
              radii: tuple[tuple[int, ...], tuple[int, ...]] = (RADII, RADII_CROWDED)) -> Scene:
    """A random scene of a parsed prompt (any world built on v2's drawing) at ``size`` with ``radii``."""
    colours = list(COLOURS)
    specs = [(o.shape, o.colour if o.colour is not None else str(rng.choice(colours))) for o in parsed.objects]
    return place(specs, rng, size, parsed.relation, radii=radii)
