"""Writing a sampled point cloud out as text, within a token budget.

Coordinates are normalised to the bounding box (one scale for all three axes, so shapes are
not stretched) and quantized to integers 0-999, as in LLM point-cloud serialisations such as
PointLLM / "LLMs read point clouds as text" studies. Each sampled point becomes one line with a
short id. Geometry summaries are rendered as 0-9 ranks (deciles within the shown points) packed
into one three-digit column, since tokenizers such as SmolLM2's spend a token per digit and per space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent3d.geometry import LocalGeometry

FORMATS = ("xyz", "xyz+geom")
_LEGENDS = {
    "xyz": "id x y z",
    "xyz+geom": "id x y z crd, where crd is three digits, each a rank 0-9 among the shown points: "
                "c = curvature (how sharply the surface bends), r = residual (roughness against the local "
                "plane), d = density (how crowded the neighbourhood is)",
}


@dataclass
class View:
    """The verbalized sample: what the language model reads.

    Attributes
    ----------
    indices : ndarray of shape (n_shown,), int64
        Index of each shown point in the full cloud, in line order.
    ids : list of str
        Short id of each line (``"p0"`` ... ), in line order.
    lines : list of str
        One text line per shown point.
    quantized : ndarray of shape (n_shown, 3), int64
        Coordinates quantized to 0-999.
    format : str
        One of ``FORMATS``.
    legend : str
        What the columns mean.
    """

    indices: np.ndarray
    ids: list[str]
    lines: list[str]
    quantized: np.ndarray
    format: str
    legend: str

    def text(self, rows: np.ndarray | None = None) -> str:
        """The lines of ``rows`` (positions in this view; all when None), newline-joined."""
        rows = np.arange(len(self.lines)) if rows is None else rows
        return "\n".join(self.lines[i] for i in rows)


def quantize(points: np.ndarray, levels: int = 1000) -> np.ndarray:
    """Normalise to the bounding box with one scale for all axes and round to integers.

    Parameters
    ----------
    points : ndarray of shape (n, 3), float64
    levels : int, default 1000
        Integers run from 0 to ``levels - 1``; the longest box edge spans the full range.

    Returns
    -------
    ndarray of shape (n, 3), int64
    """
    low = points.min(axis=0)
    extent = float(np.ptp(points, axis=0).max()) or 1.0
    return np.clip(np.rint((points - low) / extent * (levels - 1)), 0, levels - 1).astype(np.int64)


def ranks(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Rank of each value as a quantile bin 0..bins-1 (ties share a bin).

    Parameters
    ----------
    values : ndarray of shape (n,), float64

    Returns
    -------
    ndarray of shape (n,), int64
    """
    first = np.searchsorted(np.sort(values), values, side="left")  # ties share the lowest rank
    return np.minimum(first * bins // max(len(values), 1), bins - 1).astype(np.int64)


def verbalize(points: np.ndarray, indices: np.ndarray, geometry: LocalGeometry | None = None,
              fmt: str = "xyz+geom") -> View:
    """Turn sampled points into text lines, ordered along x, then y, then z.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
        The full cloud.
    indices : ndarray of shape (n_sampled,), int64
        Sampled points (from :func:`agent3d.sampling.sample`).
    geometry : LocalGeometry, optional
        Summaries of the sampled points, in the order of ``indices``; required for ``xyz+geom``.
    fmt : {"xyz", "xyz+geom"}, default "xyz+geom"

    Returns
    -------
    View

    Raises
    ------
    ValueError
        Unknown format, or ``xyz+geom`` without geometry.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown verbalization format '{fmt}' (expected one of {', '.join(FORMATS)})")
    quantized = quantize(points[indices])
    order = np.lexsort((quantized[:, 2], quantized[:, 1], quantized[:, 0]))
    lines = [f"p{i} {x} {y} {z}" for i, (x, y, z) in enumerate(quantized[order].tolist())]
    if fmt == "xyz+geom":
        if geometry is None:
            raise ValueError("format 'xyz+geom' needs the geometry summaries")
        digits = np.stack([ranks(geometry.curvature), ranks(geometry.residual), ranks(geometry.density)],
                          axis=1)[order]
        lines = [f"{line} {c}{r}{d}" for line, (c, r, d) in zip(lines, digits.tolist())]
    ids = [f"p{i}" for i in range(len(order))]
    return View(indices=np.asarray(indices)[order], ids=ids, lines=lines, quantized=quantized[order],
                format=fmt, legend=_LEGENDS[fmt])


def split_into_tiles(view: View, n_tokens: Callable[[np.ndarray], int], max_tokens: int) -> list[np.ndarray]:
    """Split a view into spatial tiles whose prompts each fit the token budget.

    A tile over budget is halved at the median of its longest axis (a k-d split) until every
    tile fits. Text is never truncated.

    Parameters
    ----------
    view : View
    n_tokens : callable
        Maps an array of view rows to the token count of the full prompt showing those rows.
    max_tokens : int
        Budget per prompt (``--max-prompt-tokens``).

    Returns
    -------
    list of ndarray of int64
        Rows of ``view`` per tile, each sorted, together covering every row once.

    Raises
    ------
    ValueError
        If a prompt showing a single point is already over budget.
    """
    pending, tiles = [np.arange(len(view.lines))], []
    while pending:
        rows = pending.pop(0)
        if n_tokens(rows) <= max_tokens:
            tiles.append(rows)
            continue
        if len(rows) == 1:
            raise ValueError(f"a prompt with a single point needs {n_tokens(rows)} tokens, "
                             f"over the budget of {max_tokens}")
        coords = view.quantized[rows]
        axis = int(np.argmax(np.ptp(coords, axis=0)))
        order = rows[np.argsort(coords[:, axis], kind="stable")]
        half = len(order) // 2
        pending.extend([np.sort(order[:half]), np.sort(order[half:])])
    return tiles
