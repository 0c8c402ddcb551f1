"""Synthetic shape scenes (CLEVR/POPE/InstaOrder-like), generated deterministically with PIL.

A scene is a JSON-able dict ``{"objects": [{shape, color, x, y, size}, ...]}`` (coordinates
as fractions of the image side, drawn in list order, so later objects are in front).
Generators make one scene per row for a given label; ``render`` draws it; the shifts
(``background``, ``scale``, ``style``) re-render the same scene differently, so labels and
ids stay the same.

Example:
    >>> import numpy as np
    >>> scene, fields = make_scene("color", 2, ("red", "green", "blue"), np.random.default_rng(0))
    >>> scene["objects"][0]["color"]
    'blue'
    >>> render(scene, 64).size
    (64, 64)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any  # a scene is a JSON-like dict of mixed values (module docstring)

import numpy as np
from jaxtyping import UInt8
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
          "yellow": (235, 200, 30), "purple": (140, 60, 180), "orange": (245, 130, 20),
          "cyan": (30, 190, 200), "gray": (110, 110, 110)}
BACKGROUND = (255, 255, 255)


def _obj(rng: np.random.Generator, shape: str | None = None, color: str | None = None,
         size: float | None = None) -> dict[str, Any]:
    return {"shape": shape or str(rng.choice(SHAPES)),
            "color": color or str(rng.choice(list(COLORS))),
            "size": float(size if size is not None else rng.uniform(0.28, 0.4)),
            "x": float(rng.uniform(0.25, 0.75)), "y": float(rng.uniform(0.25, 0.75))}


def _place_apart(objs: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Positions with no two objects overlapping (rejection sampling, deterministic)."""
    for _ in range(1000):
        for o in objs:
            half = o["size"] / 2
            o["x"], o["y"] = (float(v) for v in rng.uniform(half + 0.02, 0.98 - half, 2))
        if all(math.dist((a["x"], a["y"]), (b["x"], b["y"])) > (a["size"] + b["size"]) * 0.75
               for i, a in enumerate(objs) for b in objs[i + 1:]):
            return objs
    raise RuntimeError("could not place the objects apart; lower their size")


def _describe(o: Mapping[str, Any]) -> str:
    return f"{o['color']} {o['shape']}"


def _two_distinct(rng: np.random.Generator, size: float,
                  kinds: Sequence[str] = SHAPES) -> list[dict[str, Any]]:
    shapes = rng.choice(list(kinds), 2, replace=False)
    colors = rng.choice(list(COLORS), 2, replace=False)
    return [_obj(rng, str(s), str(c), size) for s, c in zip(shapes, colors, strict=False)]


def make_scene(kind: str, label: int, classes: Sequence[str],
               rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, str]]:
    """A scene whose answer is ``classes[label]``, and the row's template fields.

    Args:
        kind: ``color``, ``shape``, ``count``, ``position``, ``exists`` or ``occlusion``.
        label: The class index the scene must show.
        classes: The task's class names (colours, shapes, counts, ...).
        rng: The row's random generator.

    Returns:
        ``(scene, fields)``; ``fields`` feeds the prompt templates (``object``, ...).
    """
    answer = classes[label]
    if kind == "color":
        return {"objects": [_obj(rng, color=answer, size=rng.uniform(0.45, 0.6))]}, {}
    if kind == "shape":
        return {"objects": [_obj(rng, shape=answer, size=rng.uniform(0.45, 0.6))]}, {}
    if kind == "count":
        objs = [_obj(rng, size=rng.uniform(0.16, 0.2)) for _ in range(int(answer))]
        return {"objects": _place_apart(objs, rng)}, {}
    if kind == "position":
        objs = _place_apart(_two_distinct(rng, 0.3), rng)
        while abs(objs[0]["x"] - objs[1]["x"]) < 0.25:
            objs = _place_apart(objs, rng)
        subject, reference = objs if (objs[0]["x"] < objs[1]["x"]) == (answer == "left") \
            else objs[::-1]
        return {"objects": objs}, {"subject": _describe(subject), "reference": _describe(reference)}
    if kind == "exists":
        queried = str(rng.choice(SHAPES))
        others = [s for s in SHAPES if s != queried]
        objs = [_obj(rng, shape=str(rng.choice(others)), size=0.26)
                for _ in range(int(rng.integers(1, 4)))]
        if answer == "yes":
            objs[int(rng.integers(len(objs)))]["shape"] = queried
        return {"objects": _place_apart(objs, rng)}, {"object": queried}
    if kind == "occlusion":
        objs = _two_distinct(rng, 0.5, ("circle", "square", "triangle"))  # stars barely overlap
        angle = rng.uniform(0, 2 * math.pi)
        gap = rng.uniform(0.07, 0.12)  # half the centre distance: the shapes overlap
        for o, sign in zip(objs, (1, -1), strict=False):
            o["x"] = 0.5 + sign * gap * math.cos(angle)
            o["y"] = 0.5 + sign * gap * math.sin(angle)
        front, back = objs[1], objs[0]  # drawn last = in front
        subject, reference = (front, back) if answer == "in front" else (back, front)
        return {"objects": objs}, {"subject": _describe(subject), "reference": _describe(reference)}
    raise ValueError(f"unknown shapes generator {kind!r}")


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        r *= 0.85
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a))
                for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        return [(cx + (r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                 cy + (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5))
                for k in range(10)]
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Mapping[str, Any], size: int = 64, *, scale: float = 1.0,
           outline: int = 0, background: UInt8[np.ndarray, "size size 3"] | None = None
           ) -> Image.Image:
    """Draw a scene.

    Args:
        scene: The scene dict (see the module docstring).
        size: Image side in pixels.
        scale: Object size factor (about each object's centre).
        outline: Outline width in pixels; 0 draws filled shapes.
        background: An ``(size, size, 3)`` uint8 background; None is plain white.

    Returns:
        The RGB image.
    """
    if background is None:
        image = Image.new("RGB", (size, size), BACKGROUND)
    else:
        image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    for o in scene["objects"]:
        cx, cy, r = o["x"] * size, o["y"] * size, o["size"] * scale * size / 2
        color = COLORS[o["color"]]
        # outlined shapes keep a white interior, so front objects still hide back ones
        fill, width = (BACKGROUND, outline) if outline else (color, 0)
        if o["shape"] == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=color,
                         width=width or 1)
        else:
            draw.polygon(_polygon(o["shape"], cx, cy, r), fill=fill, outline=color,
                         width=width or 1)
    return image


# ---- shifts: fn(image, row, rng, **params) -> image ---------------------------------------
def _scene(row: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(row["scene"])


def shift_background(image: Image.Image, row: Mapping[str, Any], rng: np.random.Generator,
                     level: float = 0.55) -> Image.Image:
    """Re-render on a noisy grey texture of mean brightness ``level``."""
    side = image.size[0]
    noise = rng.normal(level * 255, 40, size=(side, side, 1))
    back = np.repeat(np.clip(noise, 0, 255).astype(np.uint8), 3, axis=2)
    return render(_scene(row), side, background=back)


def shift_scale(image: Image.Image, row: Mapping[str, Any], rng: np.random.Generator,
                factor: float = 0.6) -> Image.Image:
    """Re-render with every object scaled by ``factor`` about its centre."""
    return render(_scene(row), image.size[0], scale=factor)


def shift_style(image: Image.Image, row: Mapping[str, Any], rng: np.random.Generator,
                width: int = 3) -> Image.Image:
    """Re-render outlined (``width`` pixels, white interior) instead of filled."""
    return render(_scene(row), image.size[0], outline=width)


SHIFTS = {"background": shift_background, "scale": shift_scale, "style": shift_style}
