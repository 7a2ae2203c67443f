"""evaluate on a local Dask cluster (a scheduler and 1 or 2 single-threaded workers on 127.0.0.1) against the
same evaluation run in one process: wall time on the 20 pointsgrade clouds (issue 13). Prints a markdown table.

    python bench/distributed.py [DATASET]   (default ../shared/data/pointsgrade)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GATINGS = ["--gating", "saliency", "--gating", "random", "--gating", "all", "--bootstrap", "0"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    dataset = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parents[2] / "shared/data/pointsgrade")
    evaluate = [str(BIN / "agent3d"), "evaluate", dataset, *GATINGS]
    print(f"{dataset}, gatings saliency, random, all (self-reference scorer)\n")
    print("| where | wall s |\n|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"| one process, no Dask | {timed([*evaluate, '--out', f'{tmp}/local']):.1f} |")
        for n_workers in (1, 2):
            port = free_port()
            address = f"tcp://127.0.0.1:{port}"
            processes = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                           "--no-dashboard"], stderr=subprocess.DEVNULL)]
            time.sleep(3)
            processes += [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny",
                                            "--no-dashboard", "--host", "127.0.0.1"], stderr=subprocess.DEVNULL)
                          for _ in range(n_workers)]
            time.sleep(5)
            seconds = timed([*evaluate, "--out", f"{tmp}/dask{n_workers}", "--scheduler", address])
            print(f"| Dask, {n_workers} worker{'s' if n_workers > 1 else ''} | {seconds:.1f} |")
            for process in processes:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
