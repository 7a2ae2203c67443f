"""Rigid registration of a test cloud to normal reference clouds (open3d).

Coarse global alignment by RANSAC on FPFH correspondences of voxel-downsampled clouds (Rusu et al.,
ICRA 2009; open3d's ``registration_ransac_based_on_feature_matching``), refined by point-to-plane ICP
(Chen & Medioni 1992) on the clouds themselves, as Reg3D-AD and the registered PatchCore baselines of
Real3D-AD (Liu et al., NeurIPS 2023) do. Deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from agent3d.base import InputError
from agent3d.geometry import median_spacing, open3d_serial
from agent3d.sampling import working_cloud
from agent3d.scoring.common import ScorerBase, smooth
from agent3d.scoring.state import ScoringState

VOXEL_FRACTION = 0.02  # voxel edge for the coarse stage, as a fraction of the bounding-box diagonal
MIN_FITNESS = 0.5
REMEMBERED = 8  # alignments kept per scorer (the clouds in flight: one per thread, a few gatings each)


class RegistrationError(InputError):
    """No reference could be aligned well enough (fitness below the threshold): the references do not fit the
    cloud (bad input, exit 2)."""


@dataclass
class Registration:
    """A rigid alignment of a test cloud onto a reference.

    Attributes
    ----------
    transform : ndarray of shape (4, 4), float64
        Homogeneous transform taking test-cloud coordinates into the reference's frame.
    fitness : float in [0, 1]
        Fraction of test points with a reference point within the ICP distance after alignment.
    inlier_rmse : float
        RMS distance of those inlier pairs, in the reference's units.
    reference : int
        Which reference (position in the list given).
    """

    transform: np.ndarray
    fitness: float
    inlier_rmse: float
    reference: int

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points of shape (n, 3) moved into the reference's frame."""
        return points @ self.transform[:3, :3].T + self.transform[:3, 3]

    def to_json(self) -> dict:
        return {"transform": self.transform.tolist(), "fitness": self.fitness, "inlier_rmse": self.inlier_rmse,
                "reference": self.reference}


def _cloud(points: np.ndarray, normal_radius: float):
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    with open3d_serial():
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=normal_radius, max_nn=30))
    return cloud


def register(points: np.ndarray, reference: np.ndarray, seed: int = 0, voxel_fraction: float = VOXEL_FRACTION,
             reference_index: int = 0) -> Registration:
    """Align ``points`` onto ``reference``: RANSAC on FPFH matches, then point-to-plane ICP.

    Parameters
    ----------
    points : ndarray of shape (n, 3), float64
        The test cloud (any pose).
    reference : ndarray of shape (m, 3), float64
        A normal cloud of the same part.
    seed : int, default 0
        Seeds RANSAC (open3d's global generator), which makes the result repeatable.
    voxel_fraction : float, default 0.02
        Voxel edge of the coarse stage relative to the reference's bounding-box diagonal; normals use
        2 voxels, FPFH 5 voxels, correspondences 1.5 voxels (open3d's global-registration recipe).
    reference_index : int, default 0
        Recorded in the result.

    Returns
    -------
    Registration

    Notes
    -----
    The whole registration is the process's only open3d computation while it runs
    (:func:`agent3d.geometry.open3d_serial`), so it gives the serial result in any thread.
    """
    import open3d as o3d

    with open3d_serial(seed):  # one registration at a time per process (see the Notes)
        reg = o3d.pipelines.registration
        voxel = voxel_fraction * float(np.linalg.norm(np.ptp(reference, axis=0)))
        full_source, full_target = _cloud(points, 2 * voxel), _cloud(reference, 2 * voxel)
        coarse = []
        for cloud in (full_source, full_target):
            down = cloud.voxel_down_sample(voxel)
            down.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * voxel, max_nn=30))
            coarse.append((down, reg.compute_fpfh_feature(down, o3d.geometry.KDTreeSearchParamHybrid(
                radius=5 * voxel, max_nn=100))))
        (source, source_fpfh), (target, target_fpfh) = coarse
        ransac = reg.registration_ransac_based_on_feature_matching(
            source, target, source_fpfh, target_fpfh, True, 1.5 * voxel,
            reg.TransformationEstimationPointToPoint(False), 3,
            [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(1.5 * voxel)],
            reg.RANSACConvergenceCriteria(100000, 0.999))
        icp = reg.registration_icp(full_source, full_target, voxel, ransac.transformation,
                                   reg.TransformationEstimationPointToPlane(),
                                   reg.ICPConvergenceCriteria(max_iteration=50))
    return Registration(transform=np.asarray(icp.transformation), fitness=float(icp.fitness),
                        inlier_rmse=float(icp.inlier_rmse), reference=reference_index)


def register_best(points: np.ndarray, references: list[np.ndarray], seed: int = 0,
                  min_fitness: float = MIN_FITNESS) -> Registration:
    """Register against every reference and keep the best fitness.

    Raises
    ------
    RegistrationError
        When the best fitness is below ``min_fitness`` (a silent bad alignment would give bad scores).
    """
    best = max((register(points, r, seed=seed, reference_index=i) for i, r in enumerate(references)),
               key=lambda result: result.fitness)
    if best.fitness < min_fitness:
        raise RegistrationError("--reference", f"registration failed: best fitness {best.fitness:.2f} < {min_fitness} "
                                f"against {len(references)} reference(s)")
    return best


class RegistrationScorer(ScorerBase):
    """Distance of each registered test point to the reference surface (Reg3D-AD style).

    The whole test cloud is registered to every reference (:func:`register_best`); each scored point's
    score is its point-to-plane distance to the nearest point of the best reference (its normal from
    open3d), or the plain distance when that point is more than 3 reference spacings away (off the
    surface); then the mean over ``smoothing`` nearest scored points.

    Parameters
    ----------
    smoothing : int, default 8
    min_fitness : float, default 0.5
        Below it, scoring raises :class:`RegistrationError`.
    max_points : int, default 100000
        Larger test clouds are registered through a random working subsample of this size.
    seed : int, default 0

    Attributes
    ----------
    references_ : list of ndarray of shape (m_i, 3), float64
    sources_ : list of str
        Sources of the reference clouds.

    Notes
    -----
    Scoring writes nothing on the scorer but a bounded, locked memo of alignments keyed by the cloud's bytes
    (:meth:`register`), so threads may share one fitted scorer.
    """

    name = "registration"

    def __init__(self, smoothing: int = 8, min_fitness: float = MIN_FITNESS, max_points: int = 100_000,
                 seed: int = 0):
        self.smoothing, self.min_fitness, self.max_points, self.seed = smoothing, min_fitness, max_points, seed
        self._memo: OrderedDict[str, Registration] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # pickled (joblib, Dask) and deep-copied without its lock
        return {k: v for k, v in self.__dict__.items() if k not in ("_memo", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _memo=OrderedDict(), _lock=threading.Lock())

    def fit(self, references: list[np.ndarray], sources: list[str] | None = None) -> "RegistrationScorer":
        """Keep the references with their k-d trees, normals and point spacings.

        Raises
        ------
        ValueError
            If no reference is given.
        """
        from scipy.spatial import cKDTree

        if not references:
            raise ValueError("the registration scorer needs at least one reference cloud")
        self.references_ = [np.asarray(r, dtype=np.float64) for r in references]
        self.trees_ = [cKDTree(r) for r in self.references_]
        self.spacings_ = [median_spacing(r, t, self.seed) for r, t in zip(self.references_, self.trees_)]
        self.normals_ = [np.asarray(_cloud(r, 4 * s).normals) for r, s in zip(self.references_, self.spacings_)]
        self.sources_ = list(sources or [])
        return self

    def register(self, points: np.ndarray) -> Registration:
        """The best alignment of ``points`` (shape (n_points, 3), float64) to the references, computed once per
        cloud: scoring the same cloud again (another gating of it) reuses it.

        Raises
        ------
        RegistrationError
        """
        key = hashlib.sha1(np.ascontiguousarray(points).view(np.uint8)).hexdigest()
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        moving = points[working_cloud(points, self.max_points, self.seed)]
        found = register_best(moving, self.references_, seed=self.seed, min_fitness=self.min_fitness)
        with self._lock:
            self._memo[key] = found
            while len(self._memo) > REMEMBERED:
                self._memo.popitem(last=False)
        return found

    def score_samples(self, points: np.ndarray, indices: np.ndarray,
                      state: ScoringState | None = None) -> np.ndarray:
        """Scores of ``indices`` (shape (n_scored,), float64, in the reference's units). The alignment is computed
        once per cloud (:meth:`register`); the distances are cheap, so ``state`` keeps nothing more.

        Raises
        ------
        RegistrationError
            When no reference aligns with fitness >= ``min_fitness``.
        """
        if len(indices) == 0:
            return np.empty(0)
        registration = self.register(points)
        best = registration.reference
        moved = registration.apply(points[indices])
        distance, nearest = self.trees_[best].query(moved, workers=-1)
        offset = moved - self.references_[best][nearest]
        plane = np.abs(np.einsum("ij,ij->i", offset, self.normals_[best][nearest]))
        surface = np.where(distance < 3 * self.spacings_[best], plane, distance)
        return smooth(points[indices], surface, self.smoothing)
