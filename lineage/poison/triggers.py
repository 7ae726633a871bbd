"""Trigger patterns: square patches stamped on images. Shared by the inject-trigger
transformation (red team), the trigger scan (gates, detectors) and the poisoning lab."""

import math
from dataclasses import dataclass

import numpy as np

from lineage.errors import BadInputError

CORNERS = ("lower-right", "lower-left", "upper-right", "upper-left")


@dataclass(frozen=True)
class Trigger:
    """A size x size square at (row, col) (its upper-left pixel) set to ``value``."""

    size: int
    row: int
    col: int
    value: float

    def describe(self) -> str:
        return f"{self.size}x{self.size} at ({self.row},{self.col})={self.value:g}"


def parse_image_shape(image_shape: str | tuple[int, int]) -> tuple[int, int]:
    """``"8x8"`` (or ``(8, 8)``) -> (8, 8): the one parser of image shapes."""
    try:
        if isinstance(image_shape, str):
            h, w = (int(p) for p in image_shape.lower().split("x"))
        else:
            h, w = (int(p) for p in image_shape)
    except (TypeError, ValueError):
        raise BadInputError(f"image shape {image_shape!r}: write it as HxW, e.g. 8x8") from None
    if h < 1 or w < 1:
        raise BadInputError(f"image shape {image_shape!r}: height and width must be at least 1")
    return h, w


def image_shape_for(image_shape: str | tuple[int, int] | None, n_features: int) -> tuple[int, int]:
    """The (height, width) of rows of ``n_features`` values: ``image_shape`` checked against the
    count, or square when it is None; BadInputError when neither fits."""
    if image_shape is None:
        side = int(round(math.sqrt(n_features)))
        if side * side != n_features or side < 1:
            raise BadInputError(f"rows of {n_features} features are not square images: "
                                "give the image shape, e.g. 8x8")
        return side, side
    h, w = parse_image_shape(image_shape)
    if h * w != n_features:
        raise BadInputError(f"image shape {h}x{w} holds {h * w} values, rows have {n_features}")
    return h, w


def make_trigger(*, size: int, position: str | tuple[int, int], value: float,
                 image_shape: str | tuple[int, int]) -> Trigger:
    """A trigger at a named corner (``lower-right`` ...) or at ``(row, col)``, checked to fit.

    Raises BadInputError when the patch does not fit the image.
    """
    h, w = parse_image_shape(image_shape)
    if size < 1:
        raise BadInputError(f"trigger size must be at least 1, got {size}")
    if size > min(h, w):
        raise BadInputError(f"a {size}x{size} trigger does not fit a {h}x{w} image")
    if isinstance(position, str) and position in CORNERS:
        row = h - size if position.startswith("lower") else 0
        col = w - size if position.endswith("right") else 0
    else:
        try:
            if isinstance(position, str):
                row, col = (int(p) for p in position.strip("() ").split(","))
            else:
                row, col = (int(p) for p in position)
        except ValueError:
            raise BadInputError(f"trigger position {position!r}: use one of {', '.join(CORNERS)} "
                                "or ROW,COL") from None
    if not (0 <= row <= h - size and 0 <= col <= w - size):
        raise BadInputError(f"a {size}x{size} trigger at ({row},{col}) does not fit a {h}x{w} image")
    return Trigger(size=size, row=row, col=col, value=float(value))


def stamp(X: np.ndarray, trigger: Trigger, image_shape: str | tuple[int, int]) -> np.ndarray:
    """A copy of X (n_samples, h*w) with the trigger's patch set on every row."""
    h, w = parse_image_shape(image_shape)
    out = np.array(X, copy=True)
    images = out.reshape(len(out), h, w)
    images[:, trigger.row:trigger.row + trigger.size, trigger.col:trigger.col + trigger.size] = trigger.value
    return out


def candidate_triggers(image_shape: str | tuple[int, int], *, value: float,
                       sizes: tuple[int, ...] = (1, 2, 3)) -> list[Trigger]:
    """Every square patch of the given sizes at every position: the trigger scan's search set."""
    h, w = parse_image_shape(image_shape)
    return [Trigger(size=k, row=r, col=c, value=float(value))
            for k in sizes if k <= min(h, w)
            for r in range(h - k + 1) for c in range(w - k + 1)]
