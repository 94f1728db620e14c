"""Hostile traffic against `tfinpaint serve`: every probe of the hardening issue, then good traffic.

    python benchmarks/hostile_traffic.py [--model saved_models/fashion_mnist] [--seconds 60] [--clients 8]

Starts the development server on loopback with the model, then
1. sends each hostile probe (huge iteration and restart counts, NaN settings and
   pixels, a 20000x20000 PNG decompression bomb, a JPEG posing as PNG, integers over
   int32, malformed JSON, odd HTTP methods, a connection flood, a slow-loris client)
   and records what the server answered and how long it took;
2. runs `--clients` clients of good traffic (one real 28x28 image each, `inpaint_png`)
   for `--seconds`, counting answers and latencies;
and samples the server's resident memory (RSS) throughout: before, at peak, after.
Prints a table and writes results/hostile_traffic.json. The bound on every probe is the
server's: the script itself gives up on any answer after 120 s.
"""

import argparse
import base64
import concurrent.futures
import json
import os
import socket
import statistics
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np

from common import dev_server, machine, save

HERE = os.path.dirname(os.path.abspath(__file__))
SNEAKER = os.path.join(HERE, "..", "notebooks", "data", "sneaker.png")
SNEAKER_MASK = os.path.join(HERE, "..", "notebooks", "data", "sneaker_mask.png")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class MemoryWatch(threading.Thread):
    """Samples a process's RSS every 0.1 s; `.peak` is the largest seen."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self):
        while self.running:
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(0.1)


def post(url, body, timeout=120):
    """(status, short answer, seconds) of one POST; body a dict or bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    except OSError as error:
        return None, f"{type(error).__name__}: {error}", time.perf_counter() - start
    try:
        answer = json.loads(text)
        short = answer.get("error") if isinstance(answer, dict) and "error" in answer else "ok (JSON)"
    except ValueError:
        short = f"NOT JSON: {text[:80]!r}"
    return status, str(short)[:160], time.perf_counter() - start


def raw(port, data, pause=None, timeout=120):
    """Send raw bytes (a list: piece by piece, `pause` s apart) and read until the server closes."""
    start = time.perf_counter()
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(pause or timeout)
            for piece in data if isinstance(data, list) else [data]:
                sock.sendall(piece)
                if pause:
                    try:
                        answer = sock.recv(65536)
                        break
                    except TimeoutError:
                        continue
            sock.settimeout(timeout)
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as error:
        answer = answer or f"{type(error).__name__}".encode()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else None
    return status, body.decode("utf-8", "replace")[:160], time.perf_counter() - start


def bomb(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (width + 1) * height, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def probes(url, port):
    """[(probe, callable -> (status, answer, seconds))]."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (1, 28, 28, 1)).round(3).tolist()
    masks = np.ones((1, 28, 28, 1))
    masks[:, 7:21, 7:21] = 0
    masks = masks.tolist()
    ok = {"images": images, "masks": masks, "iterations": 10, "lam": 0.003, "learning_rate": 0.03,
          "restarts": 2, "seed": 0}

    def settings(**change):
        return lambda: post(url + ":predict", {"signature_name": "inpaint_with_settings",
                                               "inputs": {**ok, **change}})

    def options(**change):
        return lambda: post(url + ":predict", {"signature_name": "inpaint_with_options", "inputs": {
            **ok, "samples": 1, "window": 15, "warm_start": 0, **change}})

    def text(body):
        return lambda: post(url + ":predict", body.encode())

    b64 = lambda data: {"b64": base64.b64encode(data).decode()}  # noqa: E731
    big = bomb(20000, 20000)
    jpeg = bytes([255, 216, 255, 224]) + b"\0" * 200
    nan_images = np.array(images)
    nan_images[0, 0, 0, 0] = np.nan  # json.dumps writes a bare NaN, as a careless client would

    def flood():
        socks = []
        try:
            for _ in range(500):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(0.5)
            return raw(port, b"GET /v1/models/x HTTP/1.1\r\nHost: x\r\n\r\n")
        finally:
            for s in socks:
                s.close()
            time.sleep(3)  # let the server see them closed, so the next probe meets a free slot

    request = b"GET /v1/models/x HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    return [
        ("iterations = 2147483647", settings(iterations=2**31 - 1)),
        ("iterations = 10**8", settings(iterations=10**8)),
        ("restarts = 20000, iterations = 1", settings(restarts=20000, iterations=1)),
        ("samples = 1000000 (K beyond restarts)", options(samples=10**6)),
        ("window = 1000000", options(window=10**6)),
        ("warm_start = 7", options(warm_start=7)),
        ("restarts = 0", settings(restarts=0)),
        ("restarts = -1", settings(restarts=-1)),
        ("lam = NaN (bare NaN in the JSON)", settings(lam=float("nan"))),
        ("learning_rate = 0", settings(learning_rate=0.0)),
        ("lam = -1", settings(lam=-1.0)),
        ("an image pixel NaN", settings(images=nan_images.tolist())),
        ("image pixels of 5.0", settings(images=(np.array(images) * 0 + 5.0).tolist())),
        ("iterations = 4294967306 (over int32)", settings(iterations=4294967306)),
        ("PNG bomb 20000x20000 x2 (~1 MB body)", lambda: post(url + ":predict", {
            "signature_name": "inpaint_png", "inputs": {"image_png": [b64(big)] * 2, "mask_png": [b64(big)] * 2}})),
        ("JPEG bytes as image_png", lambda: post(url + ":predict", {
            "signature_name": "inpaint_png", "inputs": {"image_png": [b64(jpeg)], "mask_png": [b64(jpeg)]}})),
        ("signature_name as a list", lambda: post(url + ":predict", {"signature_name": ["x"], "inputs": {}})),
        ("JSON nested 100,000 deep", text("[" * 100000 + "]" * 100000)),
        ("HEAD", lambda: raw(port, b"HEAD /v1/models/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")),
        ("OPTIONS", lambda: raw(port, b"OPTIONS /v1/models/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")),
        ("TRACE", lambda: raw(port, b"TRACE /v1/models/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")),
        ("BREW (unknown method)", lambda: raw(port, b"BREW /v1/models/x HTTP/1.1\r\nHost: x\r\n"
                                                    b"Connection: close\r\n\r\n")),
        ("500 connections held open, then a request", flood),
        ("slow loris: one header byte every 1 s", lambda: raw(port, [bytes([b]) for b in request], pause=1.0)),
    ]


def good_traffic(url, clients, seconds):
    """`clients` loops of inpaint_png requests for `seconds`: counts and latencies."""
    with open(SNEAKER, "rb") as f, open(SNEAKER_MASK, "rb") as g:
        body = {"signature_name": "inpaint_png", "instances": [{
            "image_png": {"b64": base64.b64encode(f.read()).decode()},
            "mask_png": {"b64": base64.b64encode(g.read()).decode()}}]}
    deadline = time.monotonic() + seconds

    def client(_):
        results = []
        while time.monotonic() < deadline:
            status, answer, spent = post(url + ":predict", body)
            results.append((status, spent))
        return results

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    latencies = sorted(s for status, s in results if status == 200)
    return {
        "requests": len(results), "ok": len(latencies),
        "statuses": {str(k): sum(1 for s, _ in results if s == k) for k in sorted({s for s, _ in results}, key=str)},
        "requests_per_second": round(len(latencies) / seconds, 3),
        "median_seconds": round(statistics.median(latencies), 3) if latencies else None,
        "p95_seconds": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model base [default: the shipped one]")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    from tf_semantic_inpaint.local import shipped_model_dir

    base = args.model or shipped_model_dir()
    with dev_server(base) as (server, url):
        port = int(url.split(":")[2].split("/")[0])
        watch = MemoryWatch(server.pid)
        before = rss_mb(server.pid)
        watch.start()
        answered = []
        print(f"{'probe':45s} {'status':>6s} {'seconds':>8s}  answer")
        for label, probe in probes(url, port):
            status, answer, seconds = probe()
            alive = server.poll() is None
            answered.append({"probe": label, "status": status, "seconds": round(seconds, 3), "answer": answer,
                             "server_alive_after": alive})
            print(f"{label:45s} {status!s:>6s} {seconds:8.2f}  {answer[:90]}" + ("" if alive else "  SERVER DIED"))
        after_probes = rss_mb(server.pid)
        good = good_traffic(url, args.clients, args.seconds)
        print(f"good traffic: {args.clients} clients x {args.seconds:.0f} s: {good['ok']}/{good['requests']} OK, "
              f"{good['requests_per_second']} requests/s, median {good['median_seconds']} s, "
              f"p95 {good['p95_seconds']} s")
        watch.running = False
        result = {
            "machine": machine(), "model": base, "probes": answered, "good_traffic": good,
            "clients": args.clients, "seconds": args.seconds,
            "server_alive_at_end": server.poll() is None,
            "rss_mb": {"before": round(before, 1), "after_probes": round(after_probes, 1),
                       "peak": round(watch.peak, 1), "after": round(rss_mb(server.pid), 1)},
        }
        print(f"server alive at the end: {result['server_alive_at_end']}; RSS MB {result['rss_mb']}")
        save("hostile_traffic", result)


if __name__ == "__main__":
    main()
