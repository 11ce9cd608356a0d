#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Load on `vmatte serve`: UPLOADS concurrent uploads of a SIZE_MB file
(plus two over --max-upload, which must be refused with 413), while
POLLERS clients poll the job list and one job, and FOLLOWERS clients follow
/api/events. The server's resident memory (VmRSS) is read every 100 ms.

Prints one JSON object: what was sent, how each upload ended, poll
latencies, events received, and the server's idle and peak RSS.
Standard library only, so it runs on any Python 3.

usage: bench-serve.py VMATTE OUTDIR [--uploads 20] [--size-mb 100]
                      [--pollers 100] [--followers 100]
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import threading
import time

BOUNDARY = "vmatte-bench-3f9a"


def rss_kib(pid, key="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def upload(host, port, path, name, results, i):
    """One multipart upload, streamed from disk in 1 MiB pieces."""
    size = os.path.getsize(path)
    head = (
        f"--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"options\"\r\n\r\n{{}}\r\n"
        f"--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        "content-type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    started = time.monotonic()
    outcome = {"name": name, "bytes": size}
    try:
        conn = http.client.HTTPConnection(host, port, timeout=600)
        conn.putrequest("POST", "/api/jobs")
        conn.putheader("content-type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("content-length", str(len(head) + size + len(tail)))
        conn.endheaders()
        try:
            conn.send(head)
            with open(path, "rb") as f:
                while True:
                    piece = f.read(1 << 20)
                    if not piece:
                        break
                    conn.send(piece)
            conn.send(tail)
        except (BrokenPipeError, ConnectionResetError):
            # Refused before the body was read: the answer is still there.
            pass
        resp = conn.getresponse()
        body = resp.read()
        outcome["status"] = resp.status
        try:
            outcome["answer"] = json.loads(body).get("submitted") or json.loads(body).get("error")
        except ValueError:
            outcome["answer"] = body[:200].decode("utf-8", "replace")
    except Exception as e:  # noqa: BLE001 - every way an upload can end is reported
        outcome["status"] = None
        outcome["answer"] = f"{type(e).__name__}: {e}"
    outcome["seconds"] = round(time.monotonic() - started, 2)
    results[i] = outcome


def poller(host, port, stop, latencies, errors):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    while not stop.is_set():
        for path in ("/api/jobs?limit=50", "/api/jobs/1"):
            started = time.monotonic()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 500:
                    errors.append(resp.status)
                latencies.append(time.monotonic() - started)
            except Exception:  # noqa: BLE001
                errors.append("connection")
                conn = http.client.HTTPConnection(host, port, timeout=60)
        time.sleep(0.25)


def follower(host, port, stop, counts, i):
    """Follows the event stream, counting events as they come (the thread
    is left to end with the process: a stream has no last line)."""
    try:
        conn = http.client.HTTPConnection(host, port)
        conn.request("GET", "/api/events")
        resp = conn.getresponse()
        while not stop.is_set():
            line = resp.readline()
            if not line:
                break
            if line.startswith(b"event: "):
                counts[i] += 1
    except Exception:  # noqa: BLE001
        counts[i] = -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vmatte")
    ap.add_argument("outdir")
    ap.add_argument("--uploads", type=int, default=20)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--pollers", type=int, default=100)
    ap.add_argument("--followers", type=int, default=100)
    a = ap.parse_args()

    os.makedirs(a.outdir, exist_ok=True)
    data = os.path.join(a.outdir, "..", "upload.bin")
    if not os.path.exists(data) or os.path.getsize(data) != a.size_mb << 20:
        with open(data + ".tmp", "wb") as f:
            for _ in range(a.size_mb):
                f.write(os.urandom(1 << 20))
        os.replace(data + ".tmp", data)
    big = os.path.join(a.outdir, "..", "too-big.bin")
    if not os.path.exists(big) or os.path.getsize(big) != 2 * (a.size_mb << 20):
        with open(big + ".tmp", "wb") as f:
            for _ in range(2 * a.size_mb):
                f.write(os.urandom(1 << 20))
        os.replace(big + ".tmp", big)

    limit_mb = int(a.size_mb * 1.5)
    server = subprocess.Popen(
        [a.vmatte, "serve", "--listen", "127.0.0.1:0", "-o", os.path.join(a.outdir, "out"),
         "--no-workers", "--max-upload", f"{limit_mb}MiB"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = server.stdout.readline()
    m = re.search(r"http://([\d.]+):(\d+)/", line)
    if not m:
        raise SystemExit(f"bench-serve: vmatte serve printed no address: {line!r}")
    host, port = m.group(1), int(m.group(2))
    time.sleep(0.5)
    idle = rss_kib(server.pid)

    samples = []
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            v = rss_kib(server.pid)
            if v:
                samples.append(v)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    stop = threading.Event()
    latencies, errors = [], []
    counts = [0] * a.followers
    clients = [threading.Thread(target=poller, args=(host, port, stop, latencies, errors), daemon=True)
               for _ in range(a.pollers)]
    clients += [threading.Thread(target=follower, args=(host, port, stop, counts, i), daemon=True)
                for i in range(a.followers)]
    for t in clients:
        t.start()
    time.sleep(1)

    results = [None] * (a.uploads + 2)
    files = [(data, f"clip-{i:02}.mp4") for i in range(a.uploads)] + [(big, "too-big-1.mp4"), (big, "too-big-2.mp4")]
    started = time.monotonic()
    uploaders = [threading.Thread(target=upload, args=(host, port, p, n, results, i))
                 for i, (p, n) in enumerate(files)]
    for t in uploaders:
        t.start()
    for t in uploaders:
        t.join()
    wall = time.monotonic() - started
    time.sleep(2)
    stop.set()
    for t in clients[: a.pollers]:
        t.join(timeout=10)
    stop_sampling.set()
    sampler.join()
    hwm = rss_kib(server.pid, "VmHWM")
    server.terminate()
    server.wait(timeout=30)

    uploads_dir = os.path.join(a.outdir, "out", "uploads")
    left = sorted(os.listdir(uploads_dir)) if os.path.isdir(uploads_dir) else []
    accepted = [r for r in results if r and r["status"] in (200, 201)]
    refused = [r for r in results if r and r["status"] == 413]
    lat_ms = sorted(x * 1000 for x in latencies)
    report = {
        "uploads": a.uploads,
        "upload_mb": a.size_mb,
        "max_upload_mb": limit_mb,
        "pollers": a.pollers,
        "followers": a.followers,
        "wall_s": round(wall, 1),
        "accepted": len(accepted),
        "refused_413": len(refused),
        "other": [r for r in results if r and r["status"] not in (200, 201, 413)],
        "uploaded_mib": round(sum(r["bytes"] for r in accepted) / 2**20),
        "upload_mib_per_s": round(sum(r["bytes"] for r in accepted) / 2**20 / wall, 1),
        "files_left_in_uploads": len(left),
        "partial_files_left": [n for n in left if n.startswith(".partial")],
        "polls": len(latencies),
        "poll_p50_ms": round(statistics.median(lat_ms), 1) if lat_ms else None,
        "poll_p99_ms": round(lat_ms[int(len(lat_ms) * 0.99) - 1], 1) if lat_ms else None,
        "poll_errors": len(errors),
        "followers_with_events": sum(1 for c in counts if c > 0),
        "events_min_per_follower": min(counts) if counts else None,
        "rss_idle_mib": round((idle or 0) / 1024, 1),
        "rss_peak_sampled_mib": round(max(samples) / 1024, 1) if samples else None,
        "rss_hwm_mib": round((hwm or 0) / 1024, 1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
