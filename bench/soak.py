#!/usr/bin/env python3
"""Soak test of icewall: mixed load (submit, poll, query, list, log) against a release
server it starts itself on 127.0.0.1, for a bounded time. Every 30 s it records the
server's RSS, open file descriptors, p50/p99 request latency, errors and jobs.

At the end it checks that every accepted job finished with the right result, that RSS
stayed flat after warm-up (within 10% of the first post-warm-up sample) and the fd count
did not creep (its samples also count what is open at that moment: the lowest of the
last third within 10% of the lowest of the first), and that there were no errors; it
exits 1 otherwise.

The server runs with --max-results 10000: retention is what bounds its memory.
Usage: bench/soak.py [--minutes 10] [--clients 8]   (standard library only)
"""

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

EXAMPLE = {"profiles": [[21, 25, 28], [17], [17, 22, 17, 19, 17]]}
EXAMPLE_TEXT = "21 25 28\n17\n17 22 17 19 17\n"
DAYS = {None: 13, 1: 87, 2: 48, 3: 31}
COST = 32233500
SAMPLE_SECONDS = 30
WARM_UP_SAMPLES = 2


class Stats:
    """Latencies and errors of the current window, and totals, shared by clients."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = []
        self.errors = []
        self.accepted = {}
        self.requests = 0

    def record(self, seconds):
        with self.lock:
            self.latencies.append(seconds)
            self.requests += 1

    def error(self, what):
        with self.lock:
            self.errors.append(what)

    def take_window(self):
        with self.lock:
            window, self.latencies = self.latencies, []
            return window


def client(base, stats, stop, seed):
    rng = random.Random(seed)
    host, port = base.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(method, path, body=None, headers=None, expect=(200,)):
        started = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            stats.error(f"{method} {path}: {error!r}")
            return None, None
        stats.record(time.monotonic() - started)
        if response.status not in expect:
            stats.error(f"{method} {path}: {response.status} {data[:200]!r}")
            return response.status, None
        return response.status, data

    while not stop.is_set():
        teams = rng.choice([None, 1, 2, 3])
        if rng.random() < 0.5:
            body = dict(EXAMPLE, num_teams=teams)
            status, data = call("POST", "/api/simulate", json.dumps(body),
                                {"Content-Type": "application/json"}, (202,))
        else:
            query = f"?num_teams={teams}" if teams else ""
            status, data = call("POST", f"/api/simulate{query}", EXAMPLE_TEXT,
                                {"Content-Type": "text/plain"}, (202,))
        if data is None:
            continue
        job = json.loads(data)["job_id"]
        with stats.lock:
            stats.accepted[job] = teams
        while not stop.is_set():
            status, data = call("GET", f"/api/get_results/{job}")
            if data is None or json.loads(data)["status"] in ("done", "failed"):
                break
            time.sleep(0.005)
        day = rng.randint(1, 40)
        call("GET", f"/api/jobs/{job}/profiles/{rng.randint(1, 3)}/days/{day}", expect=(200, 409))
        call("GET", f"/api/jobs/{job}/profiles/overview/{day}", expect=(200, 409))
        if rng.random() < 0.2:
            call("GET", f"/api/jobs/{job}/log", expect=(200, 409))
        if rng.random() < 0.1:
            call("GET", "/api/jobs?limit=50")
        call("GET", "/profiles/overview/")
    conn.close()


def process_sample(pid):
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values, fraction):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
    work = tempfile.mkdtemp(prefix="icewall-soak-")
    server = subprocess.Popen(
        [os.path.join(root, "target/release/icewall"), "serve", "--bind", "127.0.0.1:0",
         "--results-dir", os.path.join(work, "results"), "--logs-dir", os.path.join(work, "logs"),
         "--max-results", "10000"],
        stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().strip().removeprefix("listening on ")
        print(f"server {base} (pid {server.pid}), {args.clients} clients, {args.minutes} min")
        stats, stop = Stats(), threading.Event()
        threads = [threading.Thread(target=client, args=(base, stats, stop, seed))
                   for seed in range(args.clients)]
        for thread in threads:
            thread.start()
        samples = []
        deadline = time.monotonic() + args.minutes * 60
        print(f"{'t_s':>5} {'rss_kib':>8} {'fds':>4} {'req/s':>7} {'p50_ms':>7} {'p99_ms':>7} "
              f"{'errors':>6} {'jobs':>7}")
        started = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(min(SAMPLE_SECONDS, max(0.0, deadline - time.monotonic())))
            window = stats.take_window()
            rss, fds = process_sample(server.pid)
            elapsed = time.monotonic() - started
            sample = {"t": round(elapsed), "rss_kib": rss, "fds": fds,
                      "req_per_s": round(len(window) / SAMPLE_SECONDS),
                      "p50_ms": round(percentile(window, 0.5) * 1000, 2),
                      "p99_ms": round(percentile(window, 0.99) * 1000, 2),
                      "errors": len(stats.errors), "jobs": len(stats.accepted)}
            samples.append(sample)
            print(f"{sample['t']:>5} {rss:>8} {fds:>4} {sample['req_per_s']:>7} "
                  f"{sample['p50_ms']:>7} {sample['p99_ms']:>7} {sample['errors']:>6} "
                  f"{sample['jobs']:>7}", flush=True)
        stop.set()
        for thread in threads:
            thread.join()

        # Every accepted job must be done with the right answer (unless retention already
        # removed it: then it answers 404, which is the documented outcome).
        host, port = base.replace("http://", "").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        wrong, removed = [], 0
        for job, teams in stats.accepted.items():
            conn.request("GET", f"/api/get_results/{job}")
            response = conn.getresponse()
            body = response.read()
            if response.status == 404:
                removed += 1
                continue
            result = json.loads(body)
            if (result.get("status") != "done" or result["data"]["cost"] != COST
                    or result["data"]["days"] != DAYS[teams]):
                wrong.append((job, result))
        conn.request("GET", "/api/graceful_shutdown")
        conn.getresponse().read()
        exit_code = server.wait(timeout=60)

        after = samples[WARM_UP_SAMPLES:] or samples
        def flat(key):
            first = after[0][key]
            return max(abs(s[key] - first) for s in after) <= 0.1 * first

        def no_leak(key):
            # Each sample also counts what is open at that moment (the clients'
            # connections, results being written or read): a few either way. A leak
            # raises the floor, so the lowest of the last third is held to the lowest of
            # the first.
            third = max(1, len(after) // 3)
            floor = min(s[key] for s in after[:third])
            return min(s[key] for s in after[-third:]) <= floor + max(1, 0.1 * floor)
        p99s = [s["p99_ms"] for s in after]
        summary = {
            "requests": stats.requests, "jobs": len(stats.accepted), "errors": len(stats.errors),
            "wrong_results": len(wrong), "removed_by_retention": removed,
            "rss_flat": flat("rss_kib"), "fds_flat": no_leak("fds"),
            "rss_kib_range": [min(s["rss_kib"] for s in after), max(s["rss_kib"] for s in after)],
            "fds_range": [min(s["fds"] for s in after), max(s["fds"] for s in after)],
            "p99_ms_median": statistics.median(p99s), "p99_ms_max": max(p99s),
            "server_exit": exit_code,
        }
        print(json.dumps(summary, indent=2))
        for error in stats.errors[:10]:
            print("error:", error)
        for job, result in wrong[:10]:
            print("wrong:", job, result)
        ok = (not stats.errors and not wrong and summary["rss_flat"] and summary["fds_flat"]
              and exit_code == 0)
        print("soak:", "PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if server.poll() is None:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
