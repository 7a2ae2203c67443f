"""Shared fixtures: sample paths, generated surfaces, the real embedded model, an isolated cache."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples" / "surface_00.txt"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own response cache folder."""
    monkeypatch.setenv("AGENT3D_CACHE_DIR", str(tmp_path / "llm-cache"))
    return tmp_path / "llm-cache"


def wavy_surface(n: int = 4000, seed: int = 0) -> np.ndarray:
    """A smooth freeform height field over [-1, 1]^2, points of shape (n, 3)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-1, 1, size=(n, 2))
    z = 0.15 * np.sin(2 * xy[:, 0]) * np.cos(1.5 * xy[:, 1])
    return np.column_stack([xy, z])


def plant_bump(points: np.ndarray, centre_xy=(0.3, -0.2), radius: float = 0.15, height: float = 0.06):
    """Displace points within ``radius`` of ``centre_xy`` upwards by a smooth bump; returns (points, labels)."""
    distance = np.linalg.norm(points[:, :2] - np.asarray(centre_xy), axis=1)
    inside = distance < radius
    bumped = points.copy()
    bumped[inside, 2] += height * np.cos(0.5 * np.pi * distance[inside] / radius) ** 2
    return bumped, inside.astype(np.uint8)


def terminal():
    """A rich Console that counts as a terminal, writing to memory: the live status shows on it."""
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True)


@pytest.fixture(scope="session")
def embedded_backend():
    """The real embedded SmolLM2-135M-Instruct through llama.cpp (loaded once per session)."""
    from agent3d.llm.llama_cpp import LlamaCppBackend

    return LlamaCppBackend()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server():
    """llama-cpp-python's OpenAI-compatible server with the embedded model, on 127.0.0.1 and a free port."""
    from agent3d.llm.embedded import default_model_path

    port = free_port()
    arguments = ["--model", str(default_model_path()), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192",
                 "--model_alias", "smollm2"]
    # the server loads its model as agent3d does (model_loading: no AMX buffers where they would crash)
    launcher = ("import runpy, sys\nfrom agent3d.llm.llama_cpp import model_loading\n"
                f"sys.argv = ['llama_cpp.server', *{arguments!r}]\n"
                "with model_loading():\n    runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)")
    process = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the llama-cpp-python server did not start")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


def lumpy_sphere(n: int = 8000, seed: int = 0, shape_seed: int = 7) -> np.ndarray:
    """An asymmetric closed surface (a sphere with random low-order bumps), points of shape (n, 3),
    sampled with ``seed``; the same ``shape_seed`` gives the same shape."""
    directions = np.random.default_rng(seed).normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    coefficients = np.random.default_rng(shape_seed).normal(scale=0.12, size=(6, 3))
    radius = 1.0 + sum(c[0] * np.sin((k + 1) * directions[:, 0] + c[1]) * np.cos((k + 2) * directions[:, 1] + c[2])
                       for k, c in enumerate(coefficients))
    return directions * radius[:, None]


def plant_dent(points: np.ndarray, depth_fraction: float = 0.005, radius_fraction: float = 0.08, centre: int = 0):
    """Push points near ``points[centre]`` towards the centroid by a smooth dent ``depth_fraction`` of the
    diagonal deep; returns (points, labels), labels = points moved by more than 10 % of the depth (the rim
    of a smooth dent moves by next to nothing, which no scorer can see)."""
    diagonal = float(np.linalg.norm(np.ptp(points, axis=0)))
    distance = np.linalg.norm(points - points[centre], axis=1)
    inside = distance < radius_fraction * diagonal
    inward = -points[centre] / np.linalg.norm(points[centre])
    moved = points.copy()
    profile = (1 - (distance[inside] / (radius_fraction * diagonal)) ** 2) ** 2
    moved[inside] += (depth_fraction * diagonal * profile)[:, None] * inward
    labels = np.zeros(len(points), dtype=np.uint8)
    labels[np.flatnonzero(inside)[profile > 0.1]] = 1
    return moved, labels


def completion(content: str) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}],
                       "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}).encode()


class MisbehavingServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 whose answers follow a script.

    ``script`` maps the chat request number (0, 1, ...) to ``(status, body, headers)``, to a function of
    the request body returning that, or to the string ``"hang"`` to accept the request and never answer
    (until the server stops); the last entry repeats.
    Any other path (e.g. the token counter's ``/extras/tokenize``) gets 404, as on OpenAI itself.
    """

    def __init__(self, script):
        self.script, self.requests, self.other_paths = script, [], []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.path.endswith("/chat/completions"):
                    server.other_paths.append(self.path)
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                server.requests.append(body)
                step = server.script[min(len(server.requests) - 1, len(server.script) - 1)]
                if callable(step):
                    step = step(body)
                if step == "hang":
                    server.stop.wait(30)
                    return
                status, payload, headers = step
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(*script):
        servers.append(MisbehavingServer(list(script)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
