"""Organized point clouds as MVTec 3D-AD stores them: an ``xyz`` TIFF of shape (height, width, 3), one point per
pixel, (0, 0, 0) where the sensor saw nothing, and a PNG mask of the same height and width as ground truth
(Bergmann et al., "The MVTec 3D-AD Dataset for Unsupervised 3D Anomaly Detection and Localization", VISAPP 2022).

Invalid pixels are dropped. The background plane the objects lie on is removed as BTF does (Horwitz & Hoshen,
"Back to the Feature", CVPRW 2023, ``get_fore_mask``): a plane is fitted by RANSAC (open3d ``segment_plane``) to
the valid points of the image's border frame, which sees only background, and every point closer to it than
``PLANE_DISTANCE`` of the cloud's bounding-box diagonal is dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent3d.cloud import PointCloud
from agent3d.file_checks import InputError, check_file, check_tiff
from agent3d.geometry import open3d_serial

BORDER_PIXELS = 10
PLANE_DISTANCE = 0.005  # fraction of the bounding-box diagonal


def read_organized(path: str | Path, mask_path: str | Path | None = None, remove_plane: bool = True) -> PointCloud:
    """Read an organized ``xyz`` TIFF, with labels from a PNG mask when given.

    Parameters
    ----------
    path : str or Path
        TIFF of shape (height, width, 3), float32 coordinates (tifffile).
    mask_path : str or Path, optional
        PNG of shape (height, width), nonzero = anomalous (Pillow).
    remove_plane : bool, default True
        Drop the background plane (see the module docstring).

    Returns
    -------
    PointCloud
        ``points`` of shape (n_valid, 3), float64; ``labels`` of shape (n_valid,), uint8, or None.

    Raises
    ------
    InputError
        Unreadable TIFF or PNG, a TIFF header that claims more pixels than the file holds
        (:func:`agent3d.file_checks.check_tiff`), a TIFF that is not (height, width, 3), a mask of another size.
    """
    import tifffile

    path = check_file(path)
    try:
        with tifffile.TiffFile(path) as tiff:
            check_tiff(path, tiff)  # no allocation sized by a header the bytes do not back
            image = np.asarray(tiff.asarray(), dtype=np.float64)
    except InputError:
        raise
    except (ValueError, OSError, KeyError, IndexError, tifffile.TiffFileError) as error:
        raise InputError(path, f"not a readable TIFF ({str(error).splitlines()[0]})") from None
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(path, f"expected an organized point cloud of shape (height, width, 3), got {image.shape}")
    labels = None if mask_path is None else read_mask(mask_path, image.shape[:2])
    keep = np.isfinite(image).all(axis=2) & (image != 0).any(axis=2)
    if remove_plane:
        keep &= ~plane_mask(image, keep)
    return PointCloud(points=image[keep], labels=None if labels is None else labels[keep], source=str(path))


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A PNG mask as uint8 labels of ``shape`` (nonzero pixels are 1).

    Raises
    ------
    InputError
        Unreadable PNG or another size than the cloud.
    """
    from PIL import Image, UnidentifiedImageError

    path = check_file(path)
    try:
        with Image.open(path) as image:
            mask = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(path, f"not a readable PNG mask ({error})") from None
    if mask.shape != shape:
        raise InputError(path, f"mask of {mask.shape[1]}x{mask.shape[0]} pixels, the cloud is {shape[1]}x{shape[0]}")
    return (mask > 0).astype(np.uint8)


def plane_mask(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels on the background plane fitted to the border frame's valid points (BTF's ``get_fore_mask``).

    Parameters
    ----------
    image : ndarray of shape (height, width, 3), float64
        Organized coordinates, in the file's units.
    valid : ndarray of shape (height, width), bool
        Pixels holding a point.

    Returns
    -------
    ndarray of shape (height, width), bool
        True on the plane (closer than ``PLANE_DISTANCE`` x the bounding-box diagonal); all False when the frame
        holds fewer than 50 valid points.
    """
    import open3d as o3d

    frame = np.zeros(valid.shape, dtype=bool)
    frame[:BORDER_PIXELS], frame[-BORDER_PIXELS:], frame[:, :BORDER_PIXELS], frame[:, -BORDER_PIXELS:] = (True,) * 4
    border = image[frame & valid]
    if len(border) < 50:
        return np.zeros(valid.shape, dtype=bool)
    diagonal = float(np.linalg.norm(np.ptp(image[valid], axis=0)))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(border))
    with open3d_serial(0):
        (a, b, c, d), _ = cloud.segment_plane(distance_threshold=PLANE_DISTANCE * diagonal, ransac_n=3,
                                              num_iterations=1000)
    distance = np.abs(image @ np.array([a, b, c]) + d) / np.linalg.norm([a, b, c])
    return valid & (distance < PLANE_DISTANCE * diagonal)
