"""evaluate against a local OpenAI-compatible server that answers every request after a fixed delay:
wall time of 32 samples with --concurrency 1 and 8 (issue 13). Prints a markdown table.

    python bench/concurrency.py [--samples 32] [--delay 1.0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

REPLY = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content":
                                 json.dumps({"suspects": [{"id": "p1", "confidence": 0.7, "reason": "pit"}]})}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}).encode()


def serve(delay: float) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if not self.path.endswith("/chat/completions"):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(REPLY)))
            self.end_headers()
            self.wfile.write(REPLY)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def dataset(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        xy = rng.uniform(-1, 1, size=(2000, 2))
        z = 0.1 * np.sin(3 * xy[:, 0]) + 0.05 * np.cos(2 * xy[:, 1])
        labels = (np.hypot(xy[:, 0] - 0.3, xy[:, 1]) < 0.15).astype(int)
        z += 0.05 * labels
        np.savetxt(folder / f"s{i:02d}.txt", np.column_stack([xy, z, labels]), fmt="%.5f %.5f %.5f %d")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--delay", type=float, default=1.0)
    args = parser.parse_args()
    server, url = serve(args.delay)
    agent3d = str(Path(sys.executable).parent / "agent3d")
    with tempfile.TemporaryDirectory() as tmp:
        root = dataset(Path(tmp) / "d", args.samples)
        print(f"{args.samples} samples, server answers after {args.delay:g} s, --gating llm --n-points 16\n")
        print("| --concurrency | wall s | samples/s |\n|---|---|---|")
        for concurrency in (1, 8):
            start = time.perf_counter()
            subprocess.run([agent3d, "evaluate", str(root), "--out", f"{tmp}/c{concurrency}", "--gating", "llm",
                            "--backend", "openai", "--model", "m", "--base-url", url, "--n-points", "16",
                            "--no-cache", "--bootstrap", "0", "--concurrency", str(concurrency)],
                           check=True, capture_output=True)
            seconds = time.perf_counter() - start
            print(f"| {concurrency} | {seconds:.1f} | {args.samples / seconds:.2f} |")
    server.shutdown()


if __name__ == "__main__":
    main()
