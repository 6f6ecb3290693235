"""Load on ``csrseg serve`` over the loopback: N concurrent clients for S seconds against one
``Predictor.predict`` per image in a loop, and the server's memory over the run (a soak when long).

    python benchmarks/serve_load.py --clients 8 --seconds 30            # the table in RESULTS.md
    python benchmarks/serve_load.py --clients 8 --seconds 600 --soak    # 10 minutes: RSS sampled every 5 s

The model is a random one of ``--config`` at ``--size`` px made to find a handful of instances
(:func:`soak.make_weights`; or ``--weights`` a checkpoint of your own), the images synthetic ones of
that size, sent as PNG. First the loop in this process: ``predict`` per image for ``--seconds``. Then
``csrseg serve`` in a child process (the CLI exactly) and ``--clients`` threads, each on its own
keep-alive connection, posting an image and waiting for the answer, again and again. Every request is
counted: sent, answered 200, answered otherwise, lost (no answer); the server's own count of
answered images (``/healthz``) must equal the clients'. Latency is per request, as a client sees it.
The server's RSS (children included, for ``--workers``) is read every ``--sample-every`` seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import free_port, get_json  # noqa: E402
from soak import make_images, make_weights  # noqa: E402  (a random model that finds things, synthetic images)

from csrseg.config import load_config  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def loop_baseline(weights: Path, images: list[Path], seconds: float) -> list[float]:
    """Seconds of each ``Predictor.predict`` call, one image after another, for ``seconds``."""
    from csrseg.inference.predictor import Predictor

    predictor = Predictor(weights, device="cpu")
    for path in images[:3]:  # warm-up, as the server's first requests are
        predictor.predict(path)
    latencies, end, i = [], time.monotonic() + seconds, 0
    while time.monotonic() < end:
        started = time.perf_counter()
        predictor.predict(images[i % len(images)])
        latencies.append(time.perf_counter() - started)
        i += 1
    return latencies


class Client(threading.Thread):
    """One client: POST an image, read the answer, again, until ``end``; counts and latencies kept."""

    def __init__(self, port: int, bodies: list[bytes], end: float, offset: int) -> None:
        super().__init__(daemon=True)
        self.port, self.bodies, self.end, self.offset = port, bodies, end, offset
        self.latencies: list[float] = []
        self.sent = self.ok = self.refused = self.lost = self.instances = 0

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        i = self.offset
        while time.monotonic() < self.end:
            body = self.bodies[i % len(self.bodies)]
            i += 1
            self.sent += 1
            started = time.perf_counter()
            try:
                connection.request("POST", "/predict", body=body, headers={"Content-Type": "image/png"})
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                self.lost += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                continue
            self.latencies.append(time.perf_counter() - started)
            if response.status == 200:
                self.ok += 1
                self.instances += len(json.loads(payload)["instances"])
            else:
                self.refused += 1
        connection.close()


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MB."""
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def serve_load(weights: Path, images: list[Path], args: argparse.Namespace) -> dict:
    """The clients against ``csrseg serve``: counts, latencies, RSS samples ``(seconds, MB)``."""
    port = free_port()
    command = [sys.executable, "-m", "csrseg.cli", "serve", "--weights", str(weights), "--port", str(port),
               "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--workers", str(args.workers)]
    # the server's log goes to a file: a pipe nobody reads fills after ~64 KB of access-log lines
    # (about a thousand requests) and then blocks the server in its next write
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while get_json(port, "/healthz") is None:
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"the server did not start: {log.read()[-2000:]}")
            time.sleep(0.2)
        bodies = [path.read_bytes() for path in images]
        warm = Client(port, bodies, time.monotonic() + 3, 0)  # the first batches of each size
        warm.run()
        before = sum(h["answered"] for h in [get_json(port, "/healthz")] if h)
        started = time.monotonic()
        clients = [Client(port, bodies, started + args.seconds, k * 7) for k in range(args.clients)]
        samples = [(0.0, rss_mb(server.pid))]
        for client in clients:
            client.start()
        while any(c.is_alive() for c in clients):
            time.sleep(min(args.sample_every, max(0.05, started + args.seconds - time.monotonic())))
            samples.append((time.monotonic() - started, rss_mb(server.pid)))
        for client in clients:
            client.join()
        wall = time.monotonic() - started
        health = get_json(port, "/healthz") or {}
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    return dict(
        wall=wall, sent=sum(c.sent for c in clients), ok=sum(c.ok for c in clients),
        refused=sum(c.refused for c in clients), lost=sum(c.lost for c in clients),
        instances=sum(c.instances for c in clients),
        latencies=[v for c in clients for v in c.latencies], samples=samples,
        # with one worker, /healthz counts this server's images: it must match the clients' answers
        server_answered=health.get("answered", 0) - before if args.workers == 1 else None,
        batches=health.get("batches"), largest=health.get("largest_batch"),
    )


def cpu_line() -> str:
    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else platform.processor()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags) or "?"
    return (f"{name}, {os.cpu_count()} cores ({isa}), torch {torch.__version__}, "
            f"get_cpu_capability() = {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
            f"load average {os.getloadavg()[0]:.1f} (other work on the machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--baseline-seconds", type=float, help="the predict loop's time (default --seconds; "
                        "a 10-minute soak needs no 10-minute baseline)")
    parser.add_argument("--config", default="demo")
    parser.add_argument("--size", type=int, default=256, help="image side and model input size, px")
    parser.add_argument("--weights", help="a checkpoint instead of the random model")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--soak", action="store_true", help="report RSS over time (sampled every --sample-every s)")
    parser.add_argument("--sample-every", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.weights:
            weights = Path(args.weights)
        else:
            cfg = load_config(args.config, [f"input.short_side={args.size}", f"input.max_size={args.size}"])
            weights = make_weights(work / "model.pt", cfg)
        images = sorted((make_images(work / "data", 16, args.size) / "val").glob("*.png"))
        base_seconds = args.baseline_seconds or args.seconds
        base = loop_baseline(weights, images, base_seconds)
        load = serve_load(weights, images, args)
    lat = load["latencies"]
    print(f"config {args.config} (random weights) at {args.size} px; {cpu_line()}")
    print(f"serve: {args.clients} clients x {args.seconds:g} s, --max-batch {args.max_batch} --max-wait-ms "
          f"{args.max_wait_ms:g} --workers {args.workers}; {load['batches']} batches in all, the largest {load['largest']}; "
          f"{load['instances'] / max(1, load['ok']):.1f} instances an image")
    print("| path | images/s | p50 (ms) | p95 (ms) | p99 (ms) | requests | answered 200 | other status | lost |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| `Predictor.predict` in a loop (1 image at a time) | {len(base) / base_seconds:.1f} | "
          f"{percentile(base, .5) * 1e3:.1f} | {percentile(base, .95) * 1e3:.1f} | {percentile(base, .99) * 1e3:.1f} | "
          f"{len(base)} | - | - | - |")
    print(f"| `csrseg serve`, {args.clients} clients | {load['ok'] / load['wall']:.1f} | {percentile(lat, .5) * 1e3:.1f} | "
          f"{percentile(lat, .95) * 1e3:.1f} | {percentile(lat, .99) * 1e3:.1f} | {load['sent']} | {load['ok']} | "
          f"{load['refused']} | {load['lost']} |")
    if load["server_answered"] is not None:
        print(f"server's count of answered images: {load['server_answered']} (clients': {load['ok']})"
              + ("" if load["server_answered"] == load["ok"] else "  MISMATCH"))
    samples = load["samples"]
    half = [mb for t, mb in samples if t >= samples[-1][0] / 2]
    print(f"server RSS: {samples[0][1]:.0f} MB at the start, {max(mb for _, mb in samples):.0f} MB at most, "
          f"{samples[-1][1]:.0f} MB at the end; second half {half[0]:.0f} -> {half[-1]:.0f} MB")
    if args.soak:
        print("| seconds | RSS (MB) |\n|---|---|")
        step = max(1, len(samples) // 20)
        print("\n".join(f"| {t:.0f} | {mb:.0f} |" for t, mb in samples[::step]))
    lost = load["lost"] + (load["sent"] - load["ok"] - load["refused"] - load["lost"])
    if lost or load["refused"] or (load["server_answered"] not in (None, load["ok"])):
        raise SystemExit(f"requests lost or refused: {lost} lost, {load['refused']} refused")


if __name__ == "__main__":
    main()
