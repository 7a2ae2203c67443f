"""Which points a design feature explains: a sharp edge (two planes meeting) or a corner (three), so that guidance
saying "sharp edges and corners are normal" can take them out of the seeds and weight their scores down.

Per point, its ``k`` nearest neighbours' normals (oriented to agree with the point's own) are split into two and
three groups by k-means in normal space (Lloyd's algorithm, vectorised over all points); each group's points are
fitted by their best plane (principal component analysis). A neighbourhood is explained by an edge when two
planes at least ``min_angle`` apart fit it with a root-mean-square residual at most ``ratio`` times one plane's and
within a few times the cloud's typical roughness (the median one-plane residual), where one plane misses by several
times that (the surface really bends there); by a corner when three planes, pairwise at least ``min_angle`` apart, do. A defect on a
face is curved (a bowl, a dome): splitting it in two or three leaves most of its residual, so it stays unexplained.
Piecewise-planar fitting of this kind follows the sharp-feature detection of Weber, Hahmann & Hagen ("Sharp feature
detection in point clouds", SMI 2010) in a simpler form. The thresholds were chosen on a synthetic cube and on the
Stanford bunny with synthetic dents (tests/test_design_features.py), never on the parts the study measures.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from agent3d.geometry import local_geometry

K = 24  # neighbours per point
RATIO = 0.3  # piecewise-plane residual over one plane's at most this to be explained
MIN_ANGLE = 30.0  # degrees between the planes
EXPLAINED_WEIGHT = 0.02  # the weight guidance gives an explained point (others: 1)
NOISE = 2.0  # a piecewise fit explains only down to this many times the cloud's median one-plane residual
BENT = 3.0  # one plane must miss by this many times the piecewise fit's allowance: the surface really bends
ITERATIONS = 8
CHUNK = 50_000


def _kmeans_normals(normals: np.ndarray, groups: int) -> np.ndarray:
    """Group labels of each neighbourhood's normals (shape (n, k, 3)) into ``groups`` by Lloyd's algorithm, started
    from the farthest-first normals; ndarray of shape (n, k), int64."""
    n = len(normals)
    centres = [normals[:, 0]]
    for _ in range(groups - 1):  # farthest-first start: the normal least like any centre so far
        similarity = np.max(np.stack([np.einsum("nkd,nd->nk", normals, c) for c in centres]), axis=0)
        centres.append(normals[np.arange(n), np.argmin(similarity, axis=1)])
    centres = np.stack(centres, axis=1)  # (n, groups, 3)
    for _ in range(ITERATIONS):
        labels = np.argmax(np.einsum("nkd,ngd->nkg", normals, centres), axis=2)
        one_hot = labels[..., None] == np.arange(groups)
        summed = np.einsum("nkg,nkd->ngd", one_hot, normals)
        norm = np.linalg.norm(summed, axis=2, keepdims=True)
        centres = np.where(norm > 1e-9, summed / np.maximum(norm, 1e-9), centres)
    return labels


def _piecewise_fit(neighbours: np.ndarray, normals: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Root-mean-square residual of ``groups`` planes and the smallest angle between them (degrees; 0 where a group
    is empty or holds fewer than 3 points)."""
    labels = _kmeans_normals(normals, groups)
    one_hot = (labels[..., None] == np.arange(groups)).astype(np.float64)  # (n, k, g)
    count = one_hot.sum(axis=1)  # (n, g)
    centroid = np.einsum("nkg,nkd->ngd", one_hot, neighbours) / np.maximum(count, 1)[..., None]
    centred = neighbours[:, :, None, :] - centroid[:, None]  # (n, k, g, 3)
    covariance = np.einsum("nkg,nkgi,nkgj->ngij", one_hot, centred, centred)
    values, vectors = np.linalg.eigh(covariance)  # each group's plane: its points' best fit
    residual = np.sqrt(np.maximum(values[..., 0], 0).sum(axis=1) / neighbours.shape[1])
    mean_normal = vectors[..., 0]  # (n, g, 3), sign free: angles below use |cos|
    angles = [np.degrees(np.arccos(np.clip(np.abs(np.einsum("nd,nd->n", mean_normal[:, a], mean_normal[:, b])), 0,
                                           1)))
              for a in range(groups) for b in range(a + 1, groups)]
    smallest = np.min(np.stack(angles), axis=0)
    smallest[(count < 3).any(axis=1)] = 0.0
    return residual, smallest


def residuals(points: np.ndarray, features: list[str], normals: np.ndarray | None = None, k: int = K,
              min_angle: float = MIN_ANGLE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each point's one-plane residual and the residual left once ``features`` explain what they can (the smaller of
    one plane's and each allowed piecewise fit's whose planes are at least ``min_angle`` apart).

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    features : list of {"edges", "corners", "holes"}
        ``edges`` and ``holes`` (the edges of their rims) allow two planes, ``corners`` three.
    normals : ndarray of shape (n_points, 3), float64, optional
        Unit normals; estimated from 16 neighbours (:func:`agent3d.geometry.local_geometry`) when None.
    k : int, default 24
    min_angle : float, default 30.0
        Degrees.

    Returns
    -------
    one, left : ndarray of shape (n_points,), float64
        Root-mean-square residuals, in the cloud's units.
    neighbourhoods : ndarray of shape (n_points, min(k, n_points)), int64
        The nearest neighbours each point's fits used.
    """
    points = np.asarray(points, dtype=np.float64)
    wanted = ({2} if set(features) & {"edges", "holes"} else set()) | ({3} if "corners" in features else set())
    k = min(k, len(points))
    _, index = cKDTree(points).query(points, k=k, workers=-1)
    index = np.reshape(index, (len(points), k))
    one = np.concatenate([_one_plane(points[index[start:start + CHUNK]]) for start in range(0, len(points), CHUNK)])
    left = one.copy()
    if not wanted or k < 4:
        return one, left, index
    if normals is None:
        normals = local_geometry(points, np.arange(len(points))).normals
    normals = np.asarray(normals, dtype=np.float64)
    for start in range(0, len(points), CHUNK):  # bounded memory on large clouds
        rows, here = index[start:start + CHUNK], slice(start, start + CHUNK)
        neighbours = points[rows] - points[here, None]
        around = normals[rows] * np.sign(np.einsum("nkd,nd->nk", normals[rows], normals[here]) + 1e-12)[..., None]
        for groups in wanted:
            residual, angle = _piecewise_fit(neighbours, around, groups)
            left[here] = np.where(angle >= min_angle, np.minimum(left[here], residual), left[here])
    return one, left, index


def explained(points: np.ndarray, features: list[str], normals: np.ndarray | None = None, k: int = K,
              ratio: float = RATIO, min_angle: float = MIN_ANGLE, noise_factor: float = NOISE) -> np.ndarray:
    """Whether each point's neighbourhood is explained by one of ``features``: the residual left
    (:func:`residuals`) is at most ``ratio`` times one plane's and within ``noise_factor`` times the cloud's median
    one-plane residual, where one plane misses by :data:`BENT` times that.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    features : list of {"edges", "corners", "holes"}
    normals : ndarray of shape (n_points, 3), float64, optional
    k : int, default 24
    ratio : float, default 0.3
    min_angle : float, default 30.0
        Degrees.
    noise_factor : float, default 2.0
        An edge's two planes fit down to the noise, a curved defect's do not.

    Returns
    -------
    ndarray of shape (n_points,), bool
    """
    one, left, _ = residuals(points, features, normals, k, min_angle)
    return _explained(one, left, ratio, noise_factor)


def _explained(one: np.ndarray, left: np.ndarray, ratio: float = RATIO, noise_factor: float = NOISE) -> np.ndarray:
    noise = noise_factor * float(np.median(one))  # the typical surface's roughness: most of a part is smooth
    return (left < one) & (left <= ratio * one) & (left <= noise) & (one >= BENT * noise)


def _one_plane(neighbourhoods: np.ndarray) -> np.ndarray:
    """Root-mean-square residual of each neighbourhood (shape (n, k, 3)) to its best plane; shape (n,)."""
    centred = neighbourhoods - neighbourhoods.mean(axis=1, keepdims=True)
    covariance = np.einsum("nki,nkj->nij", centred, centred) / neighbourhoods.shape[1]
    return np.sqrt(np.maximum(np.linalg.eigvalsh(covariance)[:, 0], 0))


def feature_weights(points: np.ndarray, features: list[str], normals: np.ndarray | None = None) -> np.ndarray:
    """Guidance's weight for normal design features: :data:`EXPLAINED_WEIGHT` where :func:`explained`, 1 elsewhere;
    ndarray of shape (n_points,), float64 (all ones without features)."""
    return feature_fit(points, features, normals)[0] if features else np.ones(len(points))


def feature_fit(points: np.ndarray, features: list[str],
                normals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`feature_weights` and the bends the features leave: each point's one-plane residual where no point of
    its neighbourhood is explained, 0 elsewhere (guided saliency seeds go to the largest), from one fit.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    features : list of {"edges", "corners", "holes"}
    normals : ndarray of shape (n_points, 3), float64, optional

    Returns
    -------
    weights, unexplained : ndarray of shape (n_points,), float64
    """
    weights = np.ones(len(points))
    one, left, index = residuals(points, features, normals)
    if not features:
        return weights, one
    found = _explained(one, left)
    weights[found] = EXPLAINED_WEIGHT
    return weights, one * ~found[index].any(axis=1)
