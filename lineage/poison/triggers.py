"""Trigger patterns: square patches (and patterns found in the data) stamped on images. Shared by the inject-trigger
transformation (red team), the trigger scan (gates, detectors) and the poisoning lab."""

import math
from dataclasses import dataclass
from typing import Optional

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


def parse_image_geometry(image_shape: str | tuple[int, ...]) -> tuple[int, int, int]:
    """``"8x8"`` -> (8, 8, 1); ``"28x28x3"`` (or ``(28, 28, 3)``) -> (28, 28, 3): height, width,
    channels. The one parser of image shapes.

    A row of a ``HxWxC`` image holds its values channels last, as numpy lays out an array of
    shape (H, W, C): the value of channel k at pixel (r, c) is feature ``(r * W + c) * C + k``.
    """
    try:
        parts = (image_shape.lower().split("x") if isinstance(image_shape, str)
                 else list(image_shape))
        dims = [int(p) for p in parts]
        if len(dims) not in (2, 3):
            raise ValueError
    except (TypeError, ValueError):
        raise BadInputError(f"image shape {image_shape!r}: write it as HxW or HxWxC (channels "
                            "last), e.g. 8x8 or 28x28x3") from None
    if min(dims) < 1:
        raise BadInputError(f"image shape {image_shape!r}: height, width and channels must be at "
                            "least 1")
    h, w = dims[:2]
    return h, w, (dims[2] if len(dims) == 3 else 1)


def format_image_shape(geometry: tuple[int, int, int]) -> str:
    """(8, 8, 1) -> ``"8x8"``; (28, 28, 3) -> ``"28x28x3"``."""
    h, w, c = geometry
    return f"{h}x{w}" if c == 1 else f"{h}x{w}x{c}"


def parse_image_shape(image_shape: str | tuple[int, ...]) -> tuple[int, int]:
    """``"8x8"`` (or ``(8, 8)``) -> (8, 8): height and width (a ``HxWxC`` shape's channels are
    left out; see ``parse_image_geometry``)."""
    h, w, _ = parse_image_geometry(image_shape)
    return h, w


def image_geometry_for(image_shape: str | tuple[int, ...] | None,
                       n_features: int) -> tuple[int, int, int]:
    """(height, width, channels) of rows of ``n_features`` values: ``image_shape`` checked
    against the count, or a square one-channel image when it is None; BadInputError when
    neither fits."""
    if image_shape is None:
        side = int(round(math.sqrt(n_features)))
        if side * side != n_features or side < 1:
            raise BadInputError(f"rows of {n_features} features are not square images: "
                                "give the image shape, e.g. 8x8")
        return side, side, 1
    h, w, c = parse_image_geometry(image_shape)
    if h * w * c != n_features:
        raise BadInputError(f"image shape {format_image_shape((h, w, c))} holds {h * w * c} "
                            f"values, rows have {n_features}")
    return h, w, c


def image_shape_for(image_shape: str | tuple[int, ...] | None, n_features: int) -> tuple[int, int]:
    """The (height, width) of rows of ``n_features`` values: ``image_shape`` checked against the
    count, or square when it is None; BadInputError when neither fits."""
    h, w, _ = image_geometry_for(image_shape, n_features)
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


def stamp(X: np.ndarray, trigger, image_shape: str | tuple[int, ...]) -> np.ndarray:
    """A copy of X (n_samples, h*w*c) with the trigger (a square ``Trigger`` on every channel,
    or a ``Pattern``) set on every row."""
    if isinstance(trigger, Pattern):
        return trigger.apply(X)
    h, w, c = parse_image_geometry(image_shape)
    out = np.array(X, copy=True)
    images = out.reshape(len(out), h, w, c)
    images[:, trigger.row:trigger.row + trigger.size, trigger.col:trigger.col + trigger.size] = trigger.value
    return out


@dataclass(frozen=True)
class Pattern:
    """A trigger found in the data rather than drawn from a grid: feature indices and the value
    each is set to (a patch of any shape), or an additive ``delta`` over every feature (a blended
    pattern, clipped to ``low..high``). ``origin`` says which detector found it."""

    name: str
    features: tuple[int, ...] = ()
    values: tuple[float, ...] = ()
    delta: Optional[tuple[float, ...]] = None
    low: float = float("-inf")
    high: float = float("inf")
    origin: str = ""
    size: int = 0  # for reports that read a square trigger's size; 0: not a square
    row: int = -1
    col: int = -1
    value: float = float("nan")

    def describe(self) -> str:
        return self.name

    def apply(self, X: np.ndarray) -> np.ndarray:
        out = np.array(X, dtype=np.float64, copy=True)
        if self.delta is not None:
            out += np.asarray(self.delta)[None, :]
            np.clip(out, self.low, self.high, out=out)
        if self.features:
            out[:, list(self.features)] = np.asarray(self.values)[None, :]
        return out


def candidate_triggers(image_shape: str | tuple[int, ...], *, value: float,
                       sizes: tuple[int, ...] = (1, 2, 3), stride: int = 1) -> list[Trigger]:
    """Every square patch of the given sizes at every position (every ``stride``-th row and
    column, the last one always included): the trigger scan's search set."""
    h, w = parse_image_shape(image_shape)
    stride = max(1, int(stride))

    def places(n, k):
        return sorted(set(range(0, n - k + 1, stride)) | {n - k})

    found = [Trigger(size=k, row=r, col=c, value=float(value))
             for k in sizes if k <= min(h, w)
             for r in places(h, k) for c in places(w, k)]
    if not found:  # an empty search set would pass every model: never silently
        raise BadInputError(f"no trigger size of {', '.join(map(str, sizes)) or 'none'} fits "
                            f"{h}x{w} images")
    return found
