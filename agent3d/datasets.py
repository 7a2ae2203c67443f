"""Datasets with ground-truth masks, their layouts detected automatically (docs/design.md, "Contracts").

- labeled folder: ``*.txt|*.csv`` files with rows ``x y z label``, optional ``references/`` of
  normal clouds; either directly in the folder (one class, named after it) or in class sub-folders.
- Real3D-AD: ``CLASS/train/*template*.pcd`` (references), ``CLASS/test/*.pcd``,
  ``CLASS/gt/*.txt`` (space separated ``x y z label``).
- Anomaly-ShapeNet: ``CLASS/train/*.pcd`` (references), ``CLASS/test/*.pcd`` (normal ones contain
  ``positive``), ``CLASS/GT/*.txt`` (comma separated ``x,y,z,label``, rows in another order than
  the PCD: matched by nearest neighbour).
- MVTec 3D-AD: ``CLASS/test/TYPE/xyz/*.tiff`` organized clouds with ``CLASS/test/TYPE/gt/*.png`` masks,
  ``CLASS/train/good/xyz/*.tiff`` as references (:mod:`agent3d.organized`: invalid pixels dropped, the
  background plane removed unless ``remove_plane`` is off). Sample names are ``TYPE_NNN``.

A test sample with no anomalous point counts as normal for O-AUROC.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent3d.cloud import MIN_POINTS, PointCloud
from agent3d.io import ORGANIZED_EXTENSIONS, InputError, read_cloud, read_gt
from agent3d.organized import read_organized

LABELED_EXTENSIONS = (".txt", ".csv")
NORMAL_MARKERS = ("good", "positive")


@dataclass
class Sample:
    """One test cloud of a dataset.

    Attributes
    ----------
    class_name : str
    name : str
        Unique within its class (the file stem).
    path : Path
        The cloud file.
    gt_path : Path or None
        Separate GT file (Real3D-AD, Anomaly-ShapeNet); None when the cloud carries its labels or
        is a normal sample without GT.
    """

    class_name: str
    name: str
    path: Path
    gt_path: Path | None = None

    def load(self, remove_plane: bool = True) -> PointCloud:
        """The cloud with its labels (all zeros for a normal sample without GT).

        Parameters
        ----------
        remove_plane : bool, default True
            For organized (MVTec 3D-AD) clouds: drop the background plane.

        Raises
        ------
        InputError
            Unreadable cloud or GT, or a labeled-folder file without labels.
        """
        if self.path.suffix.lower() in ORGANIZED_EXTENSIONS:
            cloud = read_organized(self.path, self.gt_path, remove_plane)
            if cloud.labels is None:
                cloud.labels = np.zeros(len(cloud), dtype=np.uint8)
            return _validated(self.path, cloud)
        cloud = read_cloud(self.path)
        if self.gt_path is not None:
            cloud.labels = read_gt(self.gt_path, cloud.points)
        elif cloud.labels is None:
            if not any(marker in self.name.lower() for marker in NORMAL_MARKERS):
                raise InputError(self.path, "test cloud has no labels and no GT file")
            cloud.labels = np.zeros(len(cloud), dtype=np.uint8)
        return cloud


@dataclass
class Dataset:
    """Test samples and normal references per class.

    Attributes
    ----------
    root : Path
    layout : str
        ``labeled``, ``real3d-ad``, ``anomaly-shapenet`` or ``mvtec3d-ad``.
    samples : list of Sample
        Sorted by class, then name.
    references : dict of str to list of Path
        Normal reference clouds per class (may be empty).
    """

    root: Path
    layout: str
    samples: list[Sample]
    references: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return sorted({s.class_name for s in self.samples})


def load_dataset(root: str | Path) -> Dataset:
    """Detect the layout of ``root`` and list its samples (a single labeled ``.txt|.csv`` file is a dataset of one).

    Raises
    ------
    InputError
        When ``root`` is missing or matches no known layout (the message names the three).
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() in LABELED_EXTENSIONS:  # one labeled cloud (e.g. tune's shell globs)
        return Dataset(root, "labeled", [Sample(root.parent.name, root.stem, root)], {root.parent.name: []})
    if not root.is_dir():
        raise InputError(root, "no such dataset folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name != "references")
    if class_dirs and all((d / "test").is_dir() and (d / "gt").is_dir() for d in class_dirs):
        return _benchmark(root, class_dirs, "real3d-ad", "gt", "*template*.pcd")
    if class_dirs and all((d / "test").is_dir() and (d / "GT").is_dir() for d in class_dirs):
        return _benchmark(root, class_dirs, "anomaly-shapenet", "GT", "*.pcd")
    if class_dirs and all(_clouds_in(d / "test", "*/xyz/*.tif*") for d in class_dirs):
        return _mvtec(root, class_dirs)
    if _labeled_files(root):
        return _labeled(root, [root])
    if class_dirs and all(_labeled_files(d) for d in class_dirs):
        return _labeled(root, class_dirs)
    raise InputError(root, "not a dataset: expected labeled *.txt|*.csv files (x y z label), "
                           "Real3D-AD (CLASS/train, CLASS/test, CLASS/gt), Anomaly-ShapeNet (CLASS/test, CLASS/GT) or "
                           "MVTec 3D-AD (CLASS/test/TYPE/xyz/*.tiff, CLASS/test/TYPE/gt/*.png)")


def _labeled_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LABELED_EXTENSIONS)


def _clouds_in(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []


def _labeled(root: Path, class_dirs: list[Path]) -> Dataset:
    samples, references = [], {}
    for folder in class_dirs:
        name = folder.name
        samples += [Sample(name, p.stem, p) for p in _labeled_files(folder)]
        references[name] = _clouds_in(folder / "references") or _clouds_in(root / "references")
    return Dataset(root, "labeled", samples, references)


def _benchmark(root: Path, class_dirs: list[Path], layout: str, gt_dir: str, reference_glob: str) -> Dataset:
    samples, references = [], {}
    for folder in class_dirs:
        gts = {p.stem: p for p in _clouds_in(folder / gt_dir, "*.txt")}
        for path in _clouds_in(folder / "test", "*.pcd"):
            samples.append(Sample(folder.name, path.stem, path, gts.get(path.stem)))
        references[folder.name] = _clouds_in(folder / "train", reference_glob)
    if not samples:
        raise InputError(root, f"{layout} layout but no test/*.pcd file")
    return Dataset(root, layout, samples, references)


def _mvtec(root: Path, class_dirs: list[Path]) -> Dataset:
    samples, references = [], {}
    for folder in class_dirs:
        for path in _clouds_in(folder / "test", "*/xyz/*.tif*"):
            kind = path.parent.parent.name
            mask = path.parent.parent / "gt" / f"{path.stem}.png"
            samples.append(Sample(folder.name, f"{kind}_{path.stem}", path, mask if mask.is_file() else None))
        references[folder.name] = _clouds_in(folder / "train" / "good" / "xyz", "*.tif*")
    return Dataset(root, "mvtec3d-ad", samples, references)


def _validated(path: Path, cloud: PointCloud) -> PointCloud:
    """An organized cloud after plane removal still needs enough points."""
    if len(cloud) < MIN_POINTS:
        raise InputError(path, f"only {len(cloud)} points left after dropping invalid pixels and the background plane")
    return cloud


def expand_patterns(paths: list[str | Path]) -> list[Path]:
    """Dataset paths with shell patterns (``surface_0?.txt``, quoted so the shell leaves them) expanded, each
    pattern's matches sorted; a path that exists, or a pattern that matches nothing, stays as it is (and
    :func:`load_dataset` refuses a missing one).

    Parameters
    ----------
    paths : list of str or Path

    Returns
    -------
    list of Path
    """
    found = []
    for path in map(Path, paths):
        pattern = not path.exists() and any(c in str(path) for c in "*?[")
        found += (sorted(Path(m) for m in glob.glob(str(path))) if pattern else []) or [path]
    return found
