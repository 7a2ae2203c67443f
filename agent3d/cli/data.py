"""``agent3d synth`` (labeled data from clean scans) and ``agent3d render`` (pictures of results)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from agent3d.cli.common import exit_codes
from agent3d.io import read_cloud
from agent3d.outputs import check_output


def synth(
    source: Path = typer.Argument(..., help="Clean mesh (.obj .ply .stl .off) or point cloud."),
    out: Path = typer.Option(..., help="Dataset folder to write (labeled-folder layout)."),
    n: int = typer.Option(20, help="Test samples (a quarter of them normal)."),
    defects: str = typer.Option("bulge,dent,crack,hole,scratch", help="Comma-separated defect types "
                                "(bulge, dent, crack, scratch, hole, contamination)."),
    n_points: int = typer.Option(20000, help="Points per cloud."),
    references: int = typer.Option(3, help="Clean reference clouds in references/."),
    noise: float = typer.Option(0.1, help="Sensor noise in median point spacings."),
    radius: float = typer.Option(0.06, help="Bulge, dent, hole and contamination radius, fraction of the diagonal."),
    depth: float = typer.Option(0.012, help="Bulge and dent height, crack depth, fraction of the diagonal."),
    seed: int = typer.Option(0, help="Seed."),
) -> None:
    """Make a labeled dataset by planting synthetic defects on a clean scan."""
    from agent3d.synth import DefectParams, make_dataset

    with exit_codes():
        manifest = make_dataset(source, out, n=n, defects=tuple(d.strip() for d in defects.split(",") if d.strip()),
                                n_points=n_points, n_references=references, noise=noise, seed=seed,
                                params=DefectParams(radius=radius, depth=depth))
    kinds = [s["type"] for s in manifest["samples"]]
    Console().print(f"wrote {len(kinds)} samples ({', '.join(f'{k} {kinds.count(k)}' for k in dict.fromkeys(kinds))}) "
                    f"and {len(manifest['references'])} references to {out}")


def render(
    source: Path = typer.Argument(..., help="A detect --out folder, its scores.ply, or any point cloud."),
    out: Path = typer.Option(..., help="PNG file to write."),
    views: int = typer.Option(3, help="Views side by side (2-4)."),
    width: int = typer.Option(1200, help="Image width in pixels."),
    height: int = typer.Option(420, help="Image height in pixels."),
) -> None:
    """Render a heatmap of anomaly scores (GT outlined, suspects marked)."""
    from agent3d.io import read_ply_fields
    from agent3d.viz import render as draw

    path = source / "scores.ply" if source.is_dir() else source
    with exit_codes():
        if not 2 <= views <= 4 or width < 100 or height < 100:
            raise ValueError("--views must be 2-4 and the image at least 100x100 pixels")
        check_output(out, folder=False)
        if path.suffix.lower() == ".ply":
            points, fields = read_ply_fields(path)
        else:
            cloud = read_cloud(path)
            points, fields = cloud.points, ({"label": cloud.labels} if cloud.labels is not None else {})
        suspects = np.flatnonzero(fields["suspect"]) if "suspect" in fields else None
        labels = fields["label"].astype(np.uint8) if "label" in fields else None
        draw(out, points, fields.get("anomaly_score"), labels, suspects, n_views=views, size=(width, height),
             title=str(source))
    Console().print(f"wrote {out}")
