"""Pictures of point clouds: anomaly-score heatmaps from several views (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent3d.outputs import atomic_write

VIEWS = ((25, -60), (25, 120), (85, -90), (0, 0))  # (elevation, azimuth) in degrees
VIEW_NAMES = ("front left", "back right", "top", "side")
GT_COLOUR, SUSPECT_COLOUR = "#00e5ff", "#39ff14"  # cyan and green: far from every colour of inferno
MAX_DRAWN = 30000


def render(path: str | Path, points: np.ndarray, scores: np.ndarray | None = None, labels: np.ndarray | None = None,
           suspects: np.ndarray | None = None, n_views: int = 3, size: tuple[int, int] = (1200, 420),
           title: str | None = None, seed: int = 0) -> Path:
    """Render a cloud coloured by anomaly score into a PNG of exactly ``size`` pixels.

    Parameters
    ----------
    path : str or Path
        Output PNG.
    points : ndarray of shape (n, 3), float64
    scores : ndarray of shape (n,), float, optional
        Colour (inferno, with a colour bar); without it points are coloured by label, else by height.
    labels : ndarray of shape (n,), {0, 1}, optional
        GT anomalous points are ringed in cyan (when coloured by score), named in the legend.
    suspects : ndarray of shape (k,), int64, optional
        Suspect indices, marked with green crosses, named in the legend. Each view is titled with its name
        and angles.
    n_views : int, default 3
        2 to 4 views.
    size : (int, int), default (1200, 420)
        Width and height in pixels.
    title : str, optional
    seed : int, default 0
        Chooses the coloured points drawn when the cloud has more than 30,000 (GT outlines and
        suspects are always drawn in full).

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        ``n_views`` outside 2..4.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not 2 <= n_views <= 4:
        raise ValueError(f"n_views must be 2, 3 or 4, got {n_views}")
    if scores is not None:
        colour, legend = scores, "anomaly score"
    elif labels is not None:
        colour, legend, labels = labels.astype(np.float64), "label (1 = anomalous)", None  # the colour says it
    else:
        colour, legend = points[:, 2], "z"
    drawn = _drawn(len(points), seed)
    drawn = drawn[np.argsort(colour[drawn], kind="stable")]  # high scores drawn last, on top
    dpi = 100
    figure = plt.figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    low, high = float(np.min(colour)), float(np.max(colour))
    axes = []
    for i, (elevation, azimuth) in enumerate(VIEWS[:n_views]):
        axis = figure.add_subplot(1, n_views, i + 1, projection="3d")
        p = points[drawn]
        weight = (colour[drawn] - low) / (high - low) if high > low else np.zeros(len(drawn))
        image = axis.scatter(p[:, 0], p[:, 1], p[:, 2], c=colour[drawn], cmap="inferno", vmin=low, vmax=high,
                             s=1.0 + 8.0 * weight**2, linewidths=0, depthshade=False)  # hot points larger
        if labels is not None and labels.any():
            gt = points[labels.astype(bool)]
            axis.scatter(gt[:, 0], gt[:, 1], gt[:, 2], facecolors="none", edgecolors=GT_COLOUR, s=16, linewidths=0.9,
                         alpha=0.9, depthshade=False, label="ground truth (anomalous)")
        if suspects is not None and len(suspects):
            sp = points[np.asarray(suspects)]
            axis.scatter(sp[:, 0], sp[:, 1], sp[:, 2], marker="x", c=SUSPECT_COLOUR, s=50, linewidths=1.6,
                         depthshade=False, label="suspects (or seeds)")
        axis.view_init(elev=elevation, azim=azimuth)
        axis.set_title(f"{VIEW_NAMES[i]} (elev {elevation}°, azim {azimuth}°)", fontsize=8)
        axis.set_box_aspect(np.maximum(np.ptp(points, axis=0), 1e-9 + 0.05 * np.ptp(points, axis=0).max()), zoom=1.35)
        axis.set_axis_off()
        axes.append(axis)
    figure.subplots_adjust(left=0.0, right=0.9, bottom=0.0, top=0.92, wspace=0.0)
    bar = figure.add_axes((0.92, 0.15, 0.012, 0.7))
    figure.colorbar(image, cax=bar, label=legend)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, names, loc="lower left", fontsize=8, frameon=True, facecolor="white")
    if title:
        figure.suptitle(title, fontsize=9)
    path = Path(path)
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format="png"))
    plt.close(figure)
    return path


def _drawn(n: int, seed: int) -> np.ndarray:
    """Indices to draw: all, or a seeded subsample of ``MAX_DRAWN`` for large clouds (GT outlines and
    suspects are drawn in full on top)."""
    if n <= MAX_DRAWN:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_DRAWN, replace=False))
