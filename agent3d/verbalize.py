"""Writing a sampled point cloud out as text, within a token budget.

Coordinates are normalised to the bounding box (one scale for all three axes, so shapes are
not stretched) and quantized to integers 0-99 (``LEVELS``), as in LLM point-cloud serialisations such as
PointLLM / "LLMs read point clouds as text" studies; two digits, because SmolLM2's tokenizer spends a token on every
digit and a third digit would cost a fifth of the prompt for a precision a small model does not use. A zoomed view
is quantized in its own, smaller bounding box, so it resolves finer detail with the same two digits. Each sampled point becomes one line with a
short id. Geometry summaries are rendered as 0-9 ranks (deciles within the shown points) packed
into one three-digit column, since tokenizers such as SmolLM2's spend a token per digit and per space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scipy.spatial import cKDTree

from agent3d.base import InputError
from agent3d.geometry import CloudContext, LocalGeometry, median_spacing
from agent3d.sampling import farthest_point_sampling

LEVELS = 100
FORMATS = ("xyz", "xyz+geom", "regions")
POINT_FORMATS = FORMATS[:2]
_LEGENDS = {
    "xyz": "id x y z",
    "xyz+geom": "id x y z crd, where crd is three digits, each a rank 0-9 among the shown points: "
                "c = curvature (how sharply the surface bends), r = residual (roughness against the local "
                "plane), d = density (how crowded the neighbourhood is)",
    "regions": "id x y z n crd: a region of the part, x y z = its centre, n = points in it, crd = three digits, "
               "each a rank 0-9 among the regions of its mean curvature, residual and density",
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
        Coordinates quantized to 0 .. ``LEVELS`` - 1.
    format : str
        One of ``FORMATS``.
    legend : str
        What the columns mean.
    digits : ndarray of shape (n_shown, 3), int64, optional
        The curvature, residual and density ranks (0-9) each line shows (``xyz+geom``; None otherwise).
    """

    indices: np.ndarray
    ids: list[str]
    lines: list[str]
    quantized: np.ndarray
    format: str
    legend: str
    digits: np.ndarray | None = None

    def text(self, rows: np.ndarray | None = None) -> str:
        """The lines of ``rows`` (positions in this view; all when None), newline-joined."""
        rows = np.arange(len(self.lines)) if rows is None else rows
        return "\n".join(self.lines[i] for i in rows)

    def spacing(self, points: np.ndarray) -> float:
        """Median distance from a shown point to its nearest shown neighbour, in the cloud's units."""
        return median_spacing(points[self.indices], n_probe=len(self.indices))


def quantize(points: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Normalise to the bounding box with one scale for all axes and round to integers.

    Parameters
    ----------
    points : ndarray of shape (n, 3), float64
    levels : int, default LEVELS (100)
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
              fmt: str = "xyz+geom", levels: int = LEVELS) -> View:
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
        Point formats; the ``regions`` overview is :func:`regions_view`.
    levels : int, default LEVELS (100)
        Coordinates run from 0 to ``levels - 1`` (the shipped prompts say 0 to 99).

    Returns
    -------
    View

    Raises
    ------
    ValueError
        Unknown format (``regions`` included), or ``xyz+geom`` without geometry.
    """
    if fmt not in POINT_FORMATS:
        raise ValueError(f"unknown point format '{fmt}' (expected one of {', '.join(POINT_FORMATS)}; "
                         "regions are made by regions_view)")
    quantized = quantize(points[indices], levels)
    order = np.lexsort((quantized[:, 2], quantized[:, 1], quantized[:, 0]))
    lines = [f"p{i} {x} {y} {z}" for i, (x, y, z) in enumerate(quantized[order].tolist())]
    digits = None
    if fmt == "xyz+geom":
        if geometry is None:
            raise ValueError("format 'xyz+geom' needs the geometry summaries")
        digits = np.stack([ranks(geometry.curvature), ranks(geometry.residual), ranks(geometry.density)],
                          axis=1)[order]
        lines = [f"{line} {c}{r}{d}" for line, (c, r, d) in zip(lines, digits.tolist())]
    ids = [f"p{i}" for i in range(len(order))]
    return View(indices=np.asarray(indices)[order], ids=ids, lines=lines, quantized=quantized[order],
                format=fmt, legend=_LEGENDS[fmt], digits=digits)


def kd_split(coordinates: np.ndarray, too_big: Callable[[np.ndarray], bool]) -> list[np.ndarray]:
    """Halve groups of rows at the median of their longest axis (a k-d split) while ``too_big(rows)``.

    Returns sorted row arrays covering every row once; a single row is never split.
    """
    pending, groups = [np.arange(len(coordinates))], []
    while pending:
        rows = pending.pop(0)
        if len(rows) == 1 or not too_big(rows):
            groups.append(rows)
            continue
        axis = int(np.argmax(np.ptp(coordinates[rows], axis=0)))
        order = rows[np.argsort(coordinates[rows, axis], kind="stable")]
        pending.extend([np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])])
    return groups


def regions_view(points: np.ndarray, view: View, geometry: LocalGeometry, max_region_points: int = 16
                 ) -> tuple[View, list[np.ndarray]]:
    """The overview of the ``regions`` format: the shown points grouped into k-d regions, one line each.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
        The full cloud.
    view : View
        The verbalized sample (any format), whose rows are grouped.
    geometry : LocalGeometry
        Summaries of ``view.indices``, in that (line) order.
    max_region_points : int, default 16
        256 shown points give 16 regions.

    Returns
    -------
    regions : View
        Ids ``r0``...; ``indices`` holds, per region, the member point nearest its centroid.
    members : list of ndarray of int64
        Rows of ``view`` in each region, in region order.
    """
    members = kd_split(view.quantized, lambda rows: len(rows) > max_region_points)
    centroids = np.array([points[view.indices[rows]].mean(axis=0) for rows in members])
    summary = [np.array([values[rows].mean() for rows in members])
               for values in (geometry.curvature, geometry.residual, geometry.density)]
    digits = np.stack([ranks(v) for v in summary], axis=1)
    quantized = quantize(np.vstack([points, centroids]))[len(points):]  # the same frame as the points
    ids = [f"r{i}" for i in range(len(members))]
    lines = [f"{rid} {x} {y} {z} {len(rows)} {c}{r}{d}"
             for rid, (x, y, z), rows, (c, r, d) in zip(ids, quantized.tolist(), members, digits.tolist())]
    representative = np.array([view.indices[rows][np.argmin(np.linalg.norm(points[view.indices[rows]] - centre, axis=1))]
                               for rows, centre in zip(members, centroids)])
    return View(indices=representative, ids=ids, lines=lines, quantized=quantized, format="regions",
                legend=_LEGENDS["regions"]), members


def zoom_indices(points: np.ndarray, centres: np.ndarray, radius: float, max_points: int,
                 seed: int = 0, tree: cKDTree | None = None) -> np.ndarray:
    """Full-cloud points within ``radius`` of any centre, thinned by FPS to at most ``max_points``.

    The centres themselves are always kept (up to ``max_points``), so a suspect can be confirmed.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    centres : ndarray of shape (n_centres,), int64
    radius : float
        In the cloud's units.
    max_points : int
    seed : int, default 0
    tree : scipy.spatial.cKDTree, optional
        A tree over ``points`` to reuse.

    Returns
    -------
    ndarray of shape (<= max_points,), int64, sorted
    """
    centres = np.unique(np.asarray(centres, dtype=np.int64))
    near = (tree or cKDTree(points)).query_ball_point(points[centres], r=radius)
    candidates = np.setdiff1d(np.unique(np.concatenate([np.asarray(n, dtype=np.int64) for n in near])), centres)
    room = max_points - len(centres)
    if room <= 0:
        return np.sort(centres[:max_points])
    if len(candidates) > room:
        candidates = candidates[farthest_point_sampling(points[candidates], room, seed=seed)]
    return np.sort(np.concatenate([centres, candidates]))


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
    tiles = kd_split(view.quantized, lambda rows: n_tokens(rows) > max_tokens)
    for rows in tiles:
        if len(rows) == 1 and n_tokens(rows) > max_tokens:
            raise InputError("--max-prompt-tokens", f"a prompt with a single point needs {n_tokens(rows)} tokens, "
                                                    f"over the budget of {max_tokens}")
    return tiles


def point_format(prompt_format: str) -> str:
    """The format of the points a prompt reads: ``xyz`` for ``xyz`` prompts, ``xyz+geom`` otherwise."""
    return "xyz" if prompt_format == "xyz" else "xyz+geom"


def shown_view(context: CloudContext, shown: np.ndarray, prompt_format: str) -> View:
    """The verbalized sample a prompt reads (the points of round 1, before any regions grouping).

    Parameters
    ----------
    context : CloudContext
    shown : ndarray of shape (n_shown,), int64
        Sampled indices (:func:`agent3d.sampling.sample`).
    prompt_format : {"xyz", "xyz+geom", "regions"}
        The prompt's format.
    """
    fmt = point_format(prompt_format)
    return verbalize(context.points, shown, context.geometry(shown) if fmt == "xyz+geom" else None, fmt)


def overview_of(context: CloudContext, view: View, prompt_format: str) -> tuple[View, list[np.ndarray] | None]:
    """What round 1 shows: the view itself, or for the ``regions`` format its regions and their member rows."""
    if prompt_format != "regions":
        return view, None
    return regions_view(context.points, view, context.geometry(view.indices))


def zoomed_view(context: CloudContext, centres: np.ndarray, radius: float, max_points: int, fmt: str,
                seed: int = 0) -> View:
    """A denser view around ``centres`` (full-cloud indices) for the agent's later rounds (:func:`zoom_indices`),
    in the point format ``fmt``."""
    shown = zoom_indices(context.points, centres, radius, max_points, seed, context.tree)
    fmt = point_format(fmt)
    return verbalize(context.points, shown, context.geometry(shown) if fmt == "xyz+geom" else None, fmt)
