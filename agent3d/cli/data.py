"""``agent3d synth`` (labeled data from clean scans) and ``agent3d render`` (pictures of results)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from agent3d.cli.common import config_from, config_options, exit_codes
from agent3d.config import SynthConfig
from agent3d.io import read_cloud
from agent3d.outputs import check_output


@config_options(SynthConfig)
def synth(
    source: Path = typer.Argument(..., help="Clean mesh (.obj .ply .stl .off) or point cloud."),
    out: Path = typer.Option(..., help="Dataset folder to write (labeled-folder layout)."),
    **options,
) -> None:
    """Make a labeled dataset by planting synthetic defects on a clean scan."""
    from agent3d.synth import DefectParams, make_dataset

    with exit_codes():
        config = config_from(SynthConfig, options)
        manifest = make_dataset(source, out, n=config.n, n_points=config.n_points, n_references=config.references,
                                defects=tuple(d.strip() for d in config.defects.split(",") if d.strip()),
                                noise=config.noise, seed=config.seed,
                                params=DefectParams(radius=config.radius, depth=config.depth, width=config.width,
                                                    length=config.length))
    kinds = [s["type"] for s in manifest["samples"]]
    Console().print(f"wrote {len(kinds)} samples ({', '.join(f'{k} {kinds.count(k)}' for k in dict.fromkeys(kinds))}) "
                    f"and {len(manifest['references'])} references to {out}")


def render(
    source: Path = typer.Argument(..., help="A detect --out folder, its scores.ply, or any point cloud."),
    out: Path = typer.Option(..., help="PNG file to write."),
    views: int = typer.Option(3, min=2, max=4, help="Views side by side."),
    width: int = typer.Option(1200, min=100, max=10_000, help="Image width in pixels."),
    height: int = typer.Option(420, min=100, max=10_000, help="Image height in pixels."),
) -> None:
    """Render a heatmap of anomaly scores (GT outlined, suspects marked)."""
    from agent3d.io import read_ply_fields
    from agent3d.viz import render as draw

    path = source / "scores.ply" if source.is_dir() else source
    with exit_codes():
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
