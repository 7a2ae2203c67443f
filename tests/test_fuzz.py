"""Fuzzing the readers with hypothesis: any bytes give a cloud or one InputError naming the file, never another
exception. 30 examples per test by default; ``HYPOTHESIS_PROFILE=fuzz pytest tests/test_fuzz.py`` runs 2,000."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent3d.file_checks import InputError
from agent3d.io import read_cloud

settings.register_profile("fuzz", max_examples=2000, deadline=None)
settings.register_profile("default", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

EXTENSIONS = (".ply", ".pcd", ".npy", ".npz", ".obj", ".xyz", ".txt", ".csv", ".tiff")
HEADERS = {".ply": b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                   b"end_header\n",
           ".pcd": b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 1\n"
                   b"POINTS 3\nDATA ascii\n",
           ".npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3, 3), }",
           ".tiff": b"II*\x00\x08\x00\x00\x00"}


def read_or_refuse(path: Path) -> None:
    try:
        cloud = read_cloud(path)
    except InputError as error:
        assert str(path) in str(error) or path.name in str(error)
        assert "\n" not in str(error)
        return
    assert cloud.points.ndim == 2 and cloud.points.shape[1] == 3 and np.isfinite(cloud.points).all()


@pytest.mark.parametrize("extension", EXTENSIONS)
@given(body=st.binary(max_size=400), keep_header=st.booleans())
def test_any_bytes_give_a_cloud_or_one_input_error(extension, body, keep_header):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"cloud{extension}"
        path.write_bytes((HEADERS.get(extension, b"") if keep_header else b"") + body)
        read_or_refuse(path)


@given(rows=st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-9, 9)),
                              min_size=1, max_size=5), min_size=0, max_size=40))
def test_any_table_gives_a_cloud_or_one_input_error(rows):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cloud.txt"
        path.write_text("\n".join(" ".join(str(v) for v in row) for row in rows))
        read_or_refuse(path)


@given(record=st.dictionaries(st.sampled_from(["method", "base_model", "prompt", "guidance", "layer", "pooling",
                                               "threshold", "n_points"]),
                              st.one_of(st.none(), st.integers(), st.text(max_size=5), st.floats(),
                                        st.dictionaries(st.text(max_size=6), st.text(max_size=64), max_size=3))))
def test_any_head_record_loads_or_is_refused_in_one_line(record):
    from agent3d.llm.head import HeadAdapter

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        np.savez(root / "head.npz", mean=np.zeros(4), scale=np.ones(4), w0=np.ones((4, 1)), b0=np.zeros(1))
        (root / "head.json").write_text(json.dumps(record))
        try:
            HeadAdapter(root)
        except InputError as error:
            assert "\n" not in str(error)


@given(text=st.text(max_size=200))
def test_any_toml_configuration_is_used_or_refused_in_one_line(text):
    from typer.testing import CliRunner

    from agent3d.cli import app

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "c.toml"
        config.write_text(text)
        result = CliRunner().invoke(app, ["detect", "/nonexistent.txt", "--config", str(config)])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1
