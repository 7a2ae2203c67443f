"""Hostile inputs, generated at test time, against every reader, flag and command.

Each case asserts the whole contract: exit code 2, exactly one line on stderr starting ``agent3d:``, the
offending file (or flag) named with the problem, no traceback, and nothing written where the output would go.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from agent3d.cli import app

runner = CliRunner()
RNG = np.random.default_rng(0)
POINTS = RNG.normal(size=(300, 3))
PLY_HEAD = "ply\nformat {fmt} 1.0\nelement vertex {n}\n{props}end_header\n"


def ply(d, name, n=300, props="xyz", fmt="ascii", rows=None, tail=b""):
    header = PLY_HEAD.format(fmt=fmt, n=n, props="".join(f"property float {p}\n" for p in props))
    if rows is None:
        rows = POINTS[:, :len(props)]
    body = ("".join(" ".join(f"{v:.5f}" for v in row) + "\n" for row in rows).encode() if fmt == "ascii"
            else np.asarray(rows, "<f4").tobytes())
    (d / name).write_bytes(header.encode() + body + tail)
    return d / name


def pcd(d, name, points=300, rows=300, fields="x y z", width=None, data="ascii"):
    n_fields = len(fields.split())
    header = (f"VERSION 0.7\nFIELDS {fields}\nSIZE {' '.join(['4'] * n_fields)}\nTYPE {' '.join(['F'] * n_fields)}\n"
              f"COUNT {' '.join(['1'] * n_fields)}\nWIDTH {width or points}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
              f"POINTS {points}\nDATA {data}\n")
    block = POINTS[:rows, :n_fields] if n_fields <= 3 else np.ones((rows, n_fields))
    body = ("".join(" ".join(f"{v:.5f}" for v in r) + "\n" for r in block).encode() if data == "ascii"
            else np.asarray(block, "<f4").tobytes())
    (d / name).write_bytes(header.encode() + body)
    return d / name


def text(d, name, content):
    (d / name).write_text(content) if isinstance(content, str) else (d / name).write_bytes(content)
    return d / name


def table(d, name, array, fmt="%.6f"):
    np.savetxt(d / name, array, fmt=fmt)
    return d / name


def npy(d, name, array, allow_pickle=False):
    np.save(d / name, array, allow_pickle=allow_pickle)
    return d / name


def npz(d, name, **arrays):
    np.savez(d / name, **arrays)
    return d / name


def symlink_loop(d):
    os.symlink(d / "loop_b.ply", d / "loop_a.ply")
    os.symlink(d / "loop_a.ply", d / "loop_b.ply")
    return d / "loop_a.ply"


def fifo(d):
    os.mkfifo(d / "pipe.xyz")
    return d / "pipe.xyz"


def folder(d, name):
    (d / name).mkdir()
    return d / name


def huge_header_npy(d, name="claims.npy", archive=False):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (2_000_000_000, 3)})
    payload = buffer.getvalue() + bytes(96)
    if not archive:
        (d / name).write_bytes(payload)
    else:
        with zipfile.ZipFile(d / name, "w") as handle:
            handle.writestr("points.npy", payload)
    return d / name


def garbage_npz(d, member="points.npy"):
    with zipfile.ZipFile(d / "g.npz", "w") as archive:
        archive.writestr(member, b"not an npy file at all")
    return d / "g.npz"


# every reader: (builder of the bad file, a fragment of the expected message)
CLOUDS = {
    "missing": (lambda d: d / "nope.ply", "no such file"),
    "folder": (lambda d: folder(d, "adir.ply"), "is a folder"),
    "fifo": (fifo, "not a regular file"),
    "symlink-loop": (symlink_loop, "symbolic link loop"),
    "extension": (lambda d: text(d, "c.foo", "1 2 3\n"), "unknown extension"),
    "empty-text": (lambda d: text(d, "e.xyz", ""), "empty cloud"),
    "letters": (lambda d: text(d, "l.txt", "1 2 3\n" * 30 + "1 b 3\n"), "not a numeric table"),
    "two-columns": (lambda d: table(d, "two.txt", POINTS[:, :2]), "found 2"),
    "five-columns": (lambda d: table(d, "five.txt", np.ones((50, 5))), "found 5"),
    "nan": (lambda d: table(d, "nan.xyz", np.vstack([POINTS, [np.nan, 0, 0]])), "NaN"),
    "inf": (lambda d: table(d, "inf.csv", np.vstack([POINTS, [np.inf, 0, 0]])), "infinite"),
    "label-2": (lambda d: table(d, "lab.txt", np.column_stack([POINTS, np.full(300, 2)])), "labels must be 0 or 1"),
    "few-points": (lambda d: table(d, "few.xyz", POINTS[:5]), "only 5 points"),
    "huge": (lambda d: table(d, "huge.txt", POINTS * 1e300, fmt="%.6e"), "coordinates reach"),
    "coincident": (lambda d: table(d, "same.xyz", np.ones((100, 3))), "all points coincide"),
    "ragged": (lambda d: text(d, "rag.csv", "1,2,3\n" * 30 + "1,2\n"), "not a numeric table"),
    "binary-text": (lambda d: text(d, "bin.pts", bytes(RNG.integers(0, 256, 4000, dtype=np.uint8))), "numeric"),
    "npy-1d": (lambda d: npy(d, "v.npy", np.ones(30)), "shape"),
    "npy-2col": (lambda d: npy(d, "c2.npy", POINTS[:, :2]), "found 2"),
    "npy-complex": (lambda d: npy(d, "cx.npy", POINTS.astype(complex)), "complex128 values"),
    "npy-string": (lambda d: npy(d, "s.npy", np.array([["a", "b", "c"]] * 30)), "values, expected real numbers"),
    "npy-pickle": (lambda d: npy(d, "o.npy", np.array([[{}, 1, 2]] * 30, dtype=object), True), "NumPy"),
    "npy-garbage": (lambda d: text(d, "g.npy", b"\x93NUMPY garbage"), "NumPy"),
    "npy-2e9": (huge_header_npy, "truncated NumPy array"),
    "npz-2e9": (lambda d: huge_header_npy(d, "claims.npz", archive=True), "truncated NumPy array"),
    "npz-no-points": (lambda d: npz(d, "np.npz", other=POINTS), "no 'points' array"),
    "npz-pickle": (lambda d: npz(d, "pk.npz", points=np.array([[{}, 1, 2]] * 30, dtype=object)), "unreadable array"),
    "npz-labels": (lambda d: npz(d, "lb.npz", points=POINTS, labels=np.zeros(7)), "do not match"),
    "npz-garbage": (garbage_npz, "not a readable NumPy file"),
    "npz-raw-member": (lambda d: garbage_npz(d, "points"), "not a NumPy array"),
    "npz-string": (lambda d: npz(d, "st.npz", points=np.array([["1", "2", "3"]] * 30)), "expected real numbers"),
    "ply-short-rows": (lambda d: ply(d, "short.ply", rows=POINTS[:, :2], props="xyz"), "the header declares 3"),
    "ply-few-rows": (lambda d: ply(d, "fewrows.ply", n=400), "promises 400 vertices"),
    "ply-no-z": (lambda d: ply(d, "noz.ply", props="xy"), "no 'z' property"),
    "ply-2e9-ascii": (lambda d: ply(d, "big.ply", n=2_000_000_000), "promises 2000000000"),
    "ply-2e9-binary": (lambda d: ply(d, "bigb.ply", n=2_000_000_000, fmt="binary_little_endian"), "truncated"),
    "ply-truncated": (lambda d: ply(d, "tr.ply", n=300, fmt="binary_little_endian", rows=POINTS[:200]), "truncated"),
    "ply-no-magic": (lambda d: text(d, "nm.ply", "format ascii 1.0\nend_header\n"), "magic"),
    "ply-no-end": (lambda d: text(d, "ne.ply", "ply\nformat ascii 1.0\nelement vertex 3\n"), "end_header"),
    "ply-format": (lambda d: text(d, "fm.ply", "ply\nformat weird 1.0\nelement vertex 3\nend_header\n"), "format"),
    "ply-negative": (lambda d: ply(d, "neg.ply", n=-5), "negative"),
    "ply-type": (lambda d: text(d, "ty.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty quux x\n"
                                            "end_header\n1\n"), "unknown PLY property type"),
    "ply-no-vertex": (lambda d: text(d, "nv.ply", "ply\nformat ascii 1.0\nelement face 0\nend_header\n"), "vertex"),
    "pcd-phantom": (lambda d: pcd(d, "ph.pcd", points=400, rows=300), "promises 400 points"),
    "pcd-no-z": (lambda d: pcd(d, "nz.pcd", fields="x y"), "no 'z' field"),
    "pcd-width": (lambda d: pcd(d, "wd.pcd", width=17), "WIDTH"),
    "pcd-binary": (lambda d: pcd(d, "bn.pcd", points=400, rows=300, data="binary"), "truncated binary PCD"),
    "pcd-no-data": (lambda d: text(d, "nd.pcd", "VERSION 0.7\nFIELDS x y z\nPOINTS 3\n"), "DATA"),
    "obj-bad-vertex": (lambda d: text(d, "bv.obj", "v 1 2 3\n" * 20 + "v 1 x 3\n"), "bad vertex on line 21"),
    "obj-short-vertex": (lambda d: text(d, "sv.obj", "v 1 2 3\n" * 20 + "v 1 2\n"), "fewer than 3"),
    "obj-no-vertex": (lambda d: text(d, "nv.obj", "# nothing\nf 1 2 3\n"), "empty cloud"),
}


def assert_refused(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agent3d: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("case", sorted(CLOUDS))
def test_detect_refuses_a_hostile_cloud(tmp_path, case):
    make, reason = CLOUDS[case]
    path = make(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["detect", str(path), "--gating", "saliency", "--out", str(out)])
    assert_refused(result, path.name, reason)
    assert not out.exists()


@pytest.mark.parametrize("case", ["fifo", "npz-pickle", "coincident", "ply-no-z", "pcd-phantom"])
def test_a_hostile_reference_is_named(tmp_path, case):
    make, reason = CLOUDS[case]
    path = make(tmp_path)
    good = table(tmp_path, "good.xyz", POINTS)
    result = runner.invoke(app, ["detect", str(good), "--gating", "saliency", "--reference", str(path)])
    assert_refused(result, path.name, reason)


GT = {
    "gt-missing": (lambda d: d / "nogt.txt", "no such file"),
    "gt-3-columns": (lambda d: table(d, "gt3.txt", POINTS), "needs 4 columns"),
    "gt-elsewhere": (lambda d: table(d, "gtf.txt", np.column_stack([POINTS + 50, np.zeros(300)])), "does not match"),
    "gt-labels": (lambda d: table(d, "gtl.txt", np.column_stack([POINTS, np.full(300, 5)])), "labels must be 0 or 1"),
}


@pytest.mark.parametrize("case", sorted(GT))
def test_detect_refuses_a_hostile_ground_truth(tmp_path, case):
    make, reason = GT[case]
    path = make(tmp_path)
    result = runner.invoke(app, ["detect", str(table(tmp_path, "c.xyz", POINTS)), "--gating", "saliency",
                                 "--gt", str(path), "--out", str(tmp_path / "out")])
    assert_refused(result, path.name, reason)
    assert not (tmp_path / "out").exists()


def prompts_dir(d, system="Find defects. {{ max_suspects }}", user="{{ points }}", meta='{"format": "xyz"}'):
    folder = d / "prompts" / "mine"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(meta)
    (folder / "system.j2").write_text(system)
    (folder / "user.j2").write_text(user)
    return d / "prompts"


FLAGS = {
    "budget-0": (lambda d: ["--budget", "0"], "--budget"),
    "budget-2": (lambda d: ["--budget", "2"], "--budget"),
    "n-points-0": (lambda d: ["--n-points", "0"], "--n-points"),
    "topk-0": (lambda d: ["--topk", "0"], "--topk"),
    "prompt-escape": (lambda d: ["--gating", "llm", "--prompt", "../geom"], "a prompt name is a folder name"),
    "prompt-absolute": (lambda d: ["--gating", "llm", "--prompt", "/etc"], "a prompt name is a folder name"),
    "prompt-unknown": (lambda d: ["--gating", "llm", "--prompt", "nope"], "unknown prompt 'nope'"),
    "template-syntax": (lambda d: ["--gating", "llm", "--prompt", "mine", "--prompts-dir",
                                   str(prompts_dir(d, user="line one\n{% if points %}\n"))], "user.j2: line 2"),
    "template-variable": (lambda d: ["--gating", "llm", "--prompt", "mine", "--prompts-dir",
                                     str(prompts_dir(d, system="{{ secret_key }}"))], "unknown variable 'secret_key'"),
    "template-meta": (lambda d: ["--gating", "llm", "--prompt", "mine", "--prompts-dir",
                                 str(prompts_dir(d, meta='{"format": "poems"}'))], "meta.json: format"),
    "guidance-missing": (lambda d: ["--guidance", f"@{d / 'nog.txt'}"], "nog.txt"),
    "out-is-file": (lambda d: ["--out", str(text(d, "taken", "x"))], "taken: exists and is not a folder"),
    "out-under-file": (lambda d: ["--out", str(text(d, "plain", "x") / "sub")], "plain: is not a writable folder"),
    "reference-missing": (lambda d: ["--reference", str(d / "noref.ply")], "noref.ply: no such file"),
    "reference-empty-folder": (lambda d: ["--reference", str(folder(d, "refs"))], "holds no point cloud"),
    "model-missing": (lambda d: ["--gating", "llm", "--model", str(d / "m.gguf")], "m.gguf"),
    "adapter-embedded": (lambda d: ["--gating", "llm", "--backend", "transformers", "--adapter", "embedded"],
                         "adapter"),
}


@pytest.mark.parametrize("case", sorted(FLAGS))
def test_detect_refuses_a_hostile_flag(tmp_path, case):
    make, fragment = FLAGS[case]
    cloud = table(tmp_path, "c.xyz", POINTS)
    args = make(tmp_path)
    before = set(tmp_path.rglob("*"))
    result = runner.invoke(app, ["detect", str(cloud), "--gating", "saliency", *args])
    assert_refused(result, fragment)
    assert set(tmp_path.rglob("*")) == before


def synth_source(d):
    return table(d, "src.xyz", np.column_stack([np.cos(t := np.linspace(0, 6, 2000)), np.sin(t), t / 6]))


SYNTH = {
    "source-missing": (lambda d: [str(d / "nosrc.obj")], "nosrc.obj: no such file"),
    "stl-garbage": (lambda d: [str(text(d, "junk.stl", b"\x00garbage" * 20))], "junk.stl: no triangles"),
    "off-garbage": (lambda d: [str(text(d, "junk.off", "OFF\nbroken"))], "junk.off: no triangles"),
    "n-points-0": (lambda d: [str(synth_source(d)), "--n-points", "0"], "--n-points: Input should be greater than or equal to 16"),
    "n-0": (lambda d: [str(synth_source(d)), "--n", "0"], "--n: Input should be greater than or equal to 1"),
    "defect-unknown": (lambda d: [str(synth_source(d)), "--defects", "rust"], "rust"),
    "radius-0": (lambda d: [str(synth_source(d)), "--radius", "0"], "--radius: Input should be greater than 0"),
    "source-coincident": (lambda d: [str(table(d, "one.xyz", np.ones((50, 3))))], "all points coincide"),
}


@pytest.mark.parametrize("case", sorted(SYNTH))
def test_synth_refuses_and_leaves_nothing(tmp_path, case):
    make, fragment = SYNTH[case]
    args = make(tmp_path)
    result = runner.invoke(app, ["synth", *args, "--out", str(tmp_path / "made"), "--n", "2", "--n-points", "500",
                                 *args[1:]])
    assert_refused(result, fragment)
    assert not (tmp_path / "made").exists() and not list(tmp_path.glob(".made*"))


def test_synth_refuses_an_output_it_did_not_make(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["synth", str(synth_source(tmp_path)), "--out", str(tmp_path / "mine")])
    assert_refused(result, "mine: folder exists and holds other files")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


OTHER = {
    "render-out-folder": (lambda d: ["render", str(table(d, "r.xyz", POINTS)), "--out", str(folder(d, "png"))],
                          "png: exists and is a folder"),
    "render-views": (lambda d: ["render", str(table(d, "r.xyz", POINTS)), "--out", str(d / "r.png"), "--views", "7"],
                     "--views: Input should be less than or equal to 4"),
    "render-missing": (lambda d: ["render", str(d / "gone.ply"), "--out", str(d / "r.png")], "gone.ply"),
    "evaluate-missing": (lambda d: ["evaluate", str(d / "nodata"), "--out", str(d / "run")], "nodata"),
    "evaluate-out-file": (lambda d: ["evaluate", str(labeled(d)), "--out", str(text(d, "runfile", "x"))],
                          "runfile: exists and is not a folder"),
    "evaluate-bad-reference": (lambda d: ["evaluate", str(labeled(d)), "--out", str(d / "run"), "--reference",
                                          str(table(d, "ref1.xyz", np.ones((40, 3))))], "ref1.xyz: all points coincide"),
    "evaluate-model-missing": (lambda d: ["evaluate", str(labeled(d)), "--out", str(d / "run"), "--gating", "llm",
                                          "--model", str(d / "gone.gguf")], "gone.gguf: no such model file"),
    "prompts-show": (lambda d: ["prompts", "show", "../../etc"], "a prompt name is a folder name"),
    "prompts-render": (lambda d: ["prompts", "render", "geom", str(d / "absent.xyz")], "absent.xyz: no such file"),
    "tune-out-file": (lambda d: ["tune", str(labeled(d)), "--out", str(text(d, "tunefile", "x"))],
                      "tunefile: exists and is not a folder"),
    "tune-missing": (lambda d: ["tune", str(d / "nodata"), "--out", str(d / "adapter")], "nodata"),
}


def labeled(d):
    root = d / "data"
    root.mkdir(exist_ok=True)
    for k in range(2):
        labels = (np.arange(300) < 20 * k).astype(int)
        table(root, f"s{k}.txt", np.column_stack([POINTS + k, labels]), fmt="%.6f")
    return root


@pytest.mark.parametrize("case", sorted(OTHER))
def test_other_commands_refuse_hostile_input(tmp_path, case):
    make, fragment = OTHER[case]
    result = runner.invoke(app, make(tmp_path))
    assert_refused(result, fragment)
    assert not (tmp_path / "run").exists() and not (tmp_path / "r.png").exists() and not (tmp_path / "adapter").exists()


def test_an_adapter_for_another_architecture_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    import json

    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    from agent3d.llm import transformers as backend

    def never(*args, **kwargs):
        raise AssertionError("the base model was loaded before the adapter was checked")

    monkeypatch.setattr(backend, "load_base", never)
    folder = tmp_path / "gpt2-lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "gpt2",
                                                             "target_modules": ["c_attn"], "r": 8}))
    (folder / "tune.json").write_text(json.dumps({"base_model": {"sha256": backend.model_identity(None).sha256,
                                                                 "name": "SmolLM2"}}))
    save_file({"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": np.zeros((8, 768), np.float32)},
              str(folder / "adapter_model.safetensors"))
    sample = tmp_path / "s.txt"
    sample.write_text("\n".join(f"{x} {y} {x * y % 7} 0" for x in range(20) for y in range(20)))
    result = runner.invoke(app, ["detect", str(sample), "--gating", "llm", "--backend", "transformers", "--adapter",
                                 str(folder)])
    assert_refused(result, "gpt2-lora")
    assert "c_attn" in result.stderr and "gpt2" in result.stderr and "q_proj" in result.stderr


def test_a_refused_evaluate_leaves_no_lock_even_after_a_finished_run(tmp_path):
    data, out = labeled(tmp_path), tmp_path / "run"
    args = ["evaluate", str(data), "--gating", "random", "--bootstrap", "0", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0 and not (out / ".lock").exists()
    for score in (out / "scores").iterdir():
        score.unlink()
    (out / "scores").rmdir()
    (out / "scores").write_text("a file where the scores go")
    (out / "samples.jsonl").unlink()
    assert_refused(runner.invoke(app, args), "scores")
    assert not (out / ".lock").exists()
