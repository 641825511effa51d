#!/usr/bin/env python3
"""DELETE latency while the tombstones are rewritten, two builds side by side.

A results directory of `--jobs` done jobs is filled once (wrk POSTs, by build A), then
for each round and build a copy of it is served with `--debug-compaction-bytes
--floor`, so that `deleted-jobs.txt` is rewritten every few thousand DELETEs, each
rewrite listing the whole results directory and reading its segments. `--clients`
keep-alive connections DELETE `--deletes` of the jobs; per build the DELETE latency's
median p50, p99, p99.9 and longest, and the DELETEs/s, alternating A and B.

Usage: bench/delete-latency.py A_BIN B_BIN [--jobs 200000] [--deletes 20000]
       [--rounds 3] [--clients 4] [--floor 65536]
BENCH_TMPDIR puts the directories elsewhere (say /dev/shm). Needs wrk.
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def start(binary, work, flags=()):
    stdout = open(os.path.join(work, "stdout"), "w")
    server = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0",
         "--results-dir", os.path.join(work, "results"),
         "--logs-dir", os.path.join(work, "logs"),
         "--max-queue", "10000000", *flags],
        stdout=stdout, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(os.path.join(work, "stdout")) as text:
            found = re.search(r"http://127\.0\.0\.1:(\d+)", text.read())
        if found:
            return server, int(found.group(1))
        if server.poll() is not None:
            sys.exit(f"{binary} exited: see {work}/stdout")
        time.sleep(0.05)
    server.kill()
    sys.exit(f"{binary} did not start in 120 s")


def stop(server):
    server.send_signal(signal.SIGTERM)
    if server.wait(timeout=120) != 0:
        sys.exit("the server did not stop cleanly")


def fill(binary, work, jobs):
    """POSTs until `jobs` results are stored, then stops the server."""
    server, port = start(binary, work)
    results = os.path.join(work, "results")
    while sum(name.endswith(".result") for name in os.listdir(results)) < jobs:
        subprocess.run(["wrk", "-t1", "-c64", "-d2s", "-s", "bench/post_job.lua",
                        f"http://127.0.0.1:{port}/api/simulate"],
                       check=True, stdout=subprocess.DEVNULL)
    # Every accepted job finished before the directory is copied.
    stop(server)


def delete_all(port, ids, latencies, failures):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for job_id in ids:
        began = time.perf_counter()
        connection.request("DELETE", f"/api/jobs/{job_id}")
        answer = connection.getresponse()
        answer.read()
        latencies.append(time.perf_counter() - began)
        if answer.status != 200:
            failures.append(answer.status)


def run(binary, source, base_dir, args):
    work = tempfile.mkdtemp(dir=base_dir)
    try:
        shutil.copytree(os.path.join(source, "results"), os.path.join(work, "results"))
        server, port = start(binary, work, ["--debug-compaction-bytes", str(args.floor)])
        ids = sorted(name[:-len(".result")]
                     for name in os.listdir(os.path.join(work, "results"))
                     if name.endswith(".result"))[:args.deletes]
        latencies, failures = [], []
        threads = [threading.Thread(target=delete_all,
                                    args=(port, ids[n::args.clients], latencies, failures))
                   for n in range(args.clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        stop(server)
        if failures:
            sys.exit(f"{len(failures)} DELETEs failed: {sorted(set(failures))}")
        latencies.sort()
        at = lambda share: latencies[min(len(latencies) - 1, int(share * len(latencies)))]
        return {"p50": at(0.5) * 1e3, "p99": at(0.99) * 1e3, "p999": at(0.999) * 1e3,
                "max": latencies[-1] * 1e3, "rate": len(latencies) / elapsed}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--deletes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--floor", type=int, default=65536)
    args = parser.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    base_dir = os.environ.get("BENCH_TMPDIR")
    source = tempfile.mkdtemp(dir=base_dir)
    try:
        fill(args.a, source, args.jobs)
        stored = sum(name.endswith(".result")
                     for name in os.listdir(os.path.join(source, "results")))
        print(f"{stored} done jobs in the directory")
        rows = {"A": [], "B": []}
        for round_number in range(1, args.rounds + 1):
            for side, binary in (("A", args.a), ("B", args.b)):
                row = run(binary, source, base_dir, args)
                rows[side].append(row)
                print(f"round {round_number} {side}: " + " ".join(
                    f"{key} {value:.2f}" for key, value in row.items()), flush=True)
        print("| build | DELETEs/s | p50 ms | p99 ms | p99.9 ms | longest ms |")
        print("| --- | --- | --- | --- | --- | --- |")
        for side, binary in (("A", args.a), ("B", args.b)):
            median = {key: statistics.median(row[key] for row in rows[side])
                      for key in rows[side][0]}
            print(f"| {binary} | {median['rate']:.0f} | {median['p50']:.2f} | "
                  f"{median['p99']:.2f} | {median['p999']:.2f} | {median['max']:.1f} |")
    finally:
        shutil.rmtree(source, ignore_errors=True)


if __name__ == "__main__":
    main()
