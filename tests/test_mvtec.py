"""The MVTec 3D-AD layout, on a small folder the test writes with tifffile and Pillow: organized xyz images
with invalid (zero) pixels, a background plane, and PNG masks."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from PIL import Image
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.datasets import load_dataset

SIZE = 64


def organized(seed: int, defect: bool) -> tuple[np.ndarray, np.ndarray]:
    """A dome on a tilted table seen from above, 64 x 64 pixels, a few invalid pixels; mask of the defect."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) - 0.5
    table = 0.05 * u + 0.02 * v
    r = np.hypot(u, v)
    dome = np.where(r < 0.3, 0.2 * np.sqrt(np.clip(0.09 - r**2, 0, None)) / 0.3 + 0.02, 0.0)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    if defect:
        mask[(np.hypot(u - 0.1, v - 0.05) < 0.06)] = 255
        dome = dome - 0.02 * (mask > 0)
    z = table + dome + rng.normal(0, 1e-4, (SIZE, SIZE))
    image = np.stack([u, v, z], axis=2).astype(np.float32)
    image[rng.random((SIZE, SIZE)) < 0.03] = 0  # pixels the sensor missed
    return image, mask


def write_mvtec(root):
    for split, kind, count in (("train", "good", 2), ("test", "good", 2), ("test", "hole", 3)):
        (root / "dome" / split / kind / "xyz").mkdir(parents=True)
        if split == "test":
            (root / "dome" / split / kind / "gt").mkdir()
        for k in range(count):
            image, mask = organized(seed=hash((split, kind, k)) % 1000, defect=kind != "good")
            tifffile.imwrite(root / "dome" / split / kind / "xyz" / f"{k:03d}.tiff", image, photometric="rgb")
            if split == "test":
                Image.fromarray(mask).save(root / "dome" / split / kind / "gt" / f"{k:03d}.png")
    return root


def test_the_layout_reads_masks_drops_invalid_pixels_and_the_plane(tmp_path):
    data = load_dataset(write_mvtec(tmp_path / "mvtec"))
    assert data.layout == "mvtec3d-ad" and data.classes == ["dome"]
    assert [s.name for s in data.samples] == ["good_000", "good_001", "hole_000", "hole_001", "hole_002"]
    assert [p.name for p in data.references["dome"]] == ["000.tiff", "001.tiff"]
    image, mask = organized(seed=hash(("test", "hole", 0)) % 1000, defect=True)
    cloud = data.samples[2].load()
    valid = (image != 0).any(axis=2)
    on_object = valid & (image[:, :, 2] - (0.05 * image[:, :, 0] + 0.02 * image[:, :, 1]) > 0.01)
    assert len(cloud) == on_object.sum()  # the table is gone, the dome stays
    assert cloud.labels.sum() == ((mask > 0) & on_object).sum() > 0
    whole = data.samples[2].load(remove_plane=False)
    assert len(whole) == valid.sum() and not (whole.points == 0).all(axis=1).any()
    assert data.samples[0].load().labels.sum() == 0


def test_evaluate_runs_on_the_layout_and_a_bad_mask_is_named(tmp_path):
    root = write_mvtec(tmp_path / "mvtec")
    result = CliRunner().invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "run"), "--gating", "all",
                                      "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["layout"] == "mvtec3d-ad" and summary["n_samples"] == 5 and summary["p_auroc"] > 0.8
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "dome" / "test" / "hole" / "gt" / "001.png")
    again = CliRunner().invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "run2"), "--gating", "all",
                                     "--bootstrap", "0"])
    assert again.exit_code == 0
    failed = [json.loads(line) for line in (tmp_path / "run2" / "samples.jsonl").read_text().splitlines()
              if "failed" in line]
    assert len(failed) == 1 and "001.png: mask of 8x8 pixels, the cloud is 64x64" in failed[0]["failed"]
