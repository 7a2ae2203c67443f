"""Files whose headers lie and places that cannot hold what a command writes (issue: shared folders are data).
Each case gave a traceback, a 40 GiB allocation or silent garbage before its fix; now: one line naming the file or
flag, exit 2, nothing written, and no model loaded first."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent3d.cli import app
from test_shared_folders import SAMPLES, one_line_refusal

runner = CliRunner()
SAMPLE = SAMPLES / "surface_00.txt"


def lying_tiff(path: Path, width: int, height: int) -> Path:
    """A small float32 (40, 40, 3) TIFF whose header is patched to claim ``width`` x ``height`` pixels."""
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(path, np.random.default_rng(0).random((40, 40, 3)).astype(np.float32), photometric="rgb")
    data = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    for entry in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        at = ifd + 2 + 12 * entry
        tag, kind = struct.unpack("<HH", data[at:at + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = width if tag == 256 else height
            data[at + 8:at + 12] = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    path.write_bytes(bytes(data))
    return path


def test_a_tiff_header_claiming_more_pixels_than_the_file_holds_is_refused_before_allocating(tmp_path):
    honest = lying_tiff(tmp_path / "honest.tiff", 40, 40)
    assert runner.invoke(app, ["detect", str(honest), "--gating", "saliency", "--n-points", "32"]).exit_code == 0
    result = runner.invoke(app, ["detect", str(lying_tiff(tmp_path / "big.tiff", 60000, 60000)),
                                 "--gating", "saliency"])
    one_line_refusal(result, "big.tiff", "60000x60000x3")


@pytest.mark.parametrize("face, word", [("3 0 -1 2", "vertex -1"), ("3 0 9 2", "vertex 9")])
def test_a_mesh_whose_faces_name_missing_vertices_is_refused(tmp_path, face, word):
    mesh = tmp_path / "m.off"
    mesh.write_text(f"OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n{face}\n")
    result = runner.invoke(app, ["synth", str(mesh), "--out", str(tmp_path / "s"), "--n", "2", "--n-points", "500"])
    one_line_refusal(result, "m.off", word)
    assert not (tmp_path / "s").exists()


@pytest.fixture
def not_dask():
    """A TCP server on 127.0.0.1 that answers every connection with an HTTP reply (not Dask's protocol)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def test_a_scheduler_address_that_is_not_dask_is_one_line(tmp_path, not_dask):
    pytest.importorskip("distributed")
    from test_evaluation import write_labeled

    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "run"), "--gating", "saliency",
                                 "--n-points", "32", "--scheduler", not_dask])
    one_line_refusal(result, not_dask, "not a Dask scheduler")


def test_a_scores_entry_that_is_a_file_is_one_line(tmp_path):
    from test_evaluation import write_labeled

    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    out, command = tmp_path / "run", ["evaluate", str(root), "--gating", "saliency", "--n-points", "32"]
    assert runner.invoke(app, [*command, "--out", str(out)]).exit_code == 0
    for file in (out / "scores").iterdir():
        file.unlink()
    (out / "scores").rmdir()
    (out / "scores").write_text("not a folder")
    one_line_refusal(runner.invoke(app, [*command, "--out", str(out)]), "scores", "not a folder")


def test_cache_and_log_places_that_cannot_be_folders_are_refused_before_the_model_loads(tmp_path, monkeypatch):
    import agent3d.llm.llama_cpp as llama_cpp

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the place was checked")

    monkeypatch.setattr(llama_cpp, "load_llama", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = runner.invoke(app, ["detect", str(SAMPLE), "--n-points", "32", "--log-dir", str(blocker / "logs")])
    one_line_refusal(result, "a_file", "cannot be made a folder")
    monkeypatch.setenv("AGENT3D_CACHE_DIR", str(blocker))
    result = runner.invoke(app, ["detect", str(SAMPLE), "--n-points", "32"])
    one_line_refusal(result, "AGENT3D_CACHE_DIR", "not a folder")


def test_render_refuses_a_cloud_with_nan_positions(tmp_path):
    o3d = pytest.importorskip("open3d")
    points = np.random.default_rng(0).random((100, 3))
    points[5] = np.nan
    cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(points))
    cloud.point["anomaly_score"] = o3d.core.Tensor(np.ones((100, 1), np.float32))
    o3d.t.io.write_point_cloud(str(tmp_path / "nan.ply"), cloud)
    result = runner.invoke(app, ["render", str(tmp_path / "nan.ply"), "--out", str(tmp_path / "x.png")])
    one_line_refusal(result, "nan.ply", "NaN")
    assert not (tmp_path / "x.png").exists()


def adapter_folder(root: Path, sha256: str, name: str = "SmolLM2", weights: bytes = b"garbage") -> Path:
    """A PEFT-looking adapter folder with the given ``tune.json`` base model and weights bytes."""
    root.mkdir()
    (root / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (root / "tune.json").write_text(json.dumps({"base_model": {"sha256": sha256, "name": name}}))
    (root / "adapter_model.safetensors").write_bytes(weights)
    return root


def test_an_adapter_is_checked_before_the_base_model_loads_and_long_fields_are_cut(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    from agent3d.llm import transformers as backend

    def never(*args, **kwargs):
        raise AssertionError("the base model was loaded before the adapter was checked")

    monkeypatch.setattr(backend, "load_base", never)
    sha = backend.model_identity(None).sha256
    garbage = adapter_folder(tmp_path / "garbage", sha)
    result = runner.invoke(app, ["detect", str(SAMPLE), "--backend", "transformers", "--adapter", str(garbage)])
    one_line_refusal(result, "adapter_model.safetensors", "not readable safetensors")
    pickled = adapter_folder(tmp_path / "pickled", sha)
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
    result = runner.invoke(app, ["detect", str(SAMPLE), "--backend", "transformers", "--adapter", str(pickled)])
    one_line_refusal(result, "adapter_model.bin", "never loaded")
    long = adapter_folder(tmp_path / "long", "0" * 64, name="x" * 1_000_000)
    result = runner.invoke(app, ["detect", str(SAMPLE), "--backend", "transformers", "--adapter", str(long)])
    one_line_refusal(result, "another base model", f"sha256 {'0' * 12}); this one is SmolLM2")
    assert len(result.stderr) < 600


@pytest.mark.slow
def test_quiet_detect_with_the_transformers_backend_draws_no_progress_bar(tmp_path):
    pytest.importorskip("transformers")
    env = {**os.environ, "AGENT3D_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "agent3d", "detect", str(SAMPLE), "--backend", "transformers",
                           "--n-points", "16", "--quiet", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Converting" not in done.stderr and "%|" not in done.stderr, done.stderr
