#!/usr/bin/env python3
"""Kill -9 campaign against icewall: mixed load from several threads, the server killed
with SIGKILL at random moments for a number of rounds and restarted on the same results
directory, then every acknowledged job checked.

Builds nothing: the binary is ICEWALL_BIN (default target/release/icewall). Each round
starts the real server on 127.0.0.1:0 and ends with one SIGKILL, of one of three kinds:
  load      under mixed load (POSTs of random small walls in text and JSON, some with
            an Idempotency-Key and retries of the same key, polls, queries, DELETEs of
            done jobs and cancels of just-submitted ones);
  drain     the same, then POST /api/graceful_shutdown, then killed during the drain;
  recovery  killed at a random moment from the process start to a little after its
            listening line, that is while the previous rounds' jobs are recovered.
The drain rounds and half the others start the server with its hidden test hook
--debug-job-delay-ms (--job-delay-ms, 20 by default) so that a queue builds up: cancels,
drains and recoveries then have work to act on.

At the end the server is started once more and drained, and the campaign checks:
every job answered 202 (and not deleted or cancelled by a 200) is done with the right
summary (cost, ice, per-profile cost and sections computed here independently; days
for unlimited crews), no id ever answered two different results or went back from done,
deleted and cancelled jobs answer 404 after every restart (all of them are checked
after each start) and are not listed, a keyed retry never made two jobs (every job on
the server, acknowledged or not, is matched to the keyed walls by its summary), the
server never answered 500 nor wrote a panic, and the last graceful shutdown exits 0.
It exits 1 on any violation, printing each. Standard library only; stops by itself.
Usage: bench/kill9.py [--rounds 10] [--seconds-per-round 6] [--clients 6]
"""

import argparse
import collections
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

FOOT_COST = 370500
FOOT_ICE = 195
TIMEOUT = 10


def random_wall(rng, distinct=False):
    """Heights of a random small wall; `distinct` walls (keyed submissions) are large
    enough that their summary tells them apart from every other wall of the campaign."""
    if not distinct and rng.random() < 0.03:
        return [[30] * rng.randint(1, 4) for _ in range(rng.randint(1, 3))]
    profiles = rng.randint(5, 7) if distinct else rng.randint(1, 4)
    low, high = (6, 12) if distinct else (1, 8)
    return [[30 if rng.random() < 0.2 else rng.randint(0, 30)
             for _ in range(rng.randint(low, high))] for _ in range(profiles)]


def expected_summary(wall, teams):
    """The summary fields this campaign checks, computed from the wall alone."""
    profiles = [{"sections": len(p), "cost": sum(30 - h for h in p) * FOOT_COST,
                 "days": max(30 - h for h in p)} for p in wall]
    return {
        "num_teams": teams,
        "cost": sum(p["cost"] for p in profiles),
        "ice": sum(sum(30 - h for h in p) for p in wall) * FOOT_ICE,
        # Unlimited crews: the tallest gap; with teams only the totals are checked.
        "days": max(p["days"] for p in profiles) if teams is None else None,
        "profiles": profiles,
        # For the campaigns that ask a day's figures of a job.
        "wall": wall,
    }


def summary_mismatch(data, want):
    """A description of how `data` differs from the expected summary, or None."""
    for field in ("num_teams", "cost", "ice"):
        if data.get(field) != want[field]:
            return f"{field} {data.get(field)!r}, expected {want[field]!r}"
    if want["days"] is not None and data.get("days") != want["days"]:
        return f"days {data.get('days')!r}, expected {want['days']!r}"
    rows = data.get("profiles") or []
    if len(rows) != len(want["profiles"]):
        return f"{len(rows)} profile rows, expected {len(want['profiles'])}"
    for number, (row, expect) in enumerate(zip(rows, want["profiles"]), 1):
        if row.get("profile") != number or row.get("sections") != expect["sections"] \
                or row.get("cost") != expect["cost"] \
                or (want["days"] is not None and row.get("days") != expect["days"]):
            return f"profile row {row!r}, expected {dict(expect, profile=number)!r}"
    return None


def fingerprint(data):
    """What identifies a wall in its summary (keyed walls are distinct by construction)."""
    return (data.get("num_teams"), data.get("cost"),
            tuple((row.get("sections"), row.get("cost")) for row in data.get("profiles") or []))


def submission(rng, wall, teams):
    """Path, body and headers of a POST of `wall`, as text or as JSON at random."""
    if rng.random() < 0.5:
        body = {"profiles": wall}
        if teams is not None:
            body["num_teams"] = teams
        return "/api/simulate", json.dumps(body), {"Content-Type": "application/json"}
    query = f"?num_teams={teams}" if teams is not None else ""
    text = "".join(" ".join(map(str, profile)) + "\n" for profile in wall)
    return f"/api/simulate{query}", text, {"Content-Type": "text/plain"}


def file_store_args(binary, work, job_delay_ms):
    """The command line of one start on the campaign's shared results directory."""
    args = [binary, "serve", "--bind", "127.0.0.1:0",
            "--results-dir", os.path.join(work, "results"),
            "--logs-dir", os.path.join(work, "logs")]
    if job_delay_ms:
        args += ["--debug-job-delay-ms", str(job_delay_ms)]
    # More flags for every start, as the other benchmarks take them (say
    # "--debug-compaction-bytes 4096": the key file and the tombstones rewritten
    # while running, every few dozen lines, kills among the rewrites).
    return args + os.environ.get("ICEWALL_FLAGS", "").split()


class Server:
    """The server process of one start; `name` tells its stdout and stderr files apart."""

    def __init__(self, args, work, name):
        self.name = name
        self.stdout_path = os.path.join(work, f"stdout.{name}")
        self.stderr_path = os.path.join(work, f"stderr.{name}")
        self.started = time.monotonic()
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(args, stdout=out, stderr=err)
        self.base = None
        self.startup_seconds = None

    def listening(self):
        """The base URL once the listening line is out, else None (not waiting)."""
        if self.base is None:
            with open(self.stdout_path) as out:
                line = out.readline()
            if line.startswith("listening on ") and line.endswith("\n"):
                self.base = line.strip().removeprefix("listening on ")
                self.startup_seconds = time.monotonic() - self.started
        return self.base

    def wait_listening(self, deadline_seconds=60):
        deadline = time.monotonic() + deadline_seconds
        while self.listening() is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode} before listening: "
                                   + open(self.stderr_path).read()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not listening after {deadline_seconds} s")
            time.sleep(0.002)
        return self.base

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)


class Client:
    """One keep-alive connection that follows the server across restarts."""

    def __init__(self, campaign):
        self.campaign = campaign
        self.conn = None
        self.base = None
        self.refused = False

    def target(self):
        """The base URL the next request goes to, or None while no server listens."""
        return self.campaign.base

    def call(self, method, path, body=None, headers=None):
        """(status, headers, body) or None when the connection failed."""
        base = self.target()
        if base is None:
            return None
        if self.conn is None or self.base != base:
            if self.conn is not None:
                self.conn.close()
            host, port = base.removeprefix("http://").rsplit(":", 1)
            self.conn, self.base = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT), base
        self.refused = False
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            data = response.read()
        except ConnectionRefusedError:
            # Never sent: the server is down (killed, or drained and gone).
            self.conn.close()
            self.conn, self.refused = None, True
            self.campaign.count(method, "refused")
            time.sleep(0.01)
            return None
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            self.campaign.count(method, "transport error")
            return None
        self.campaign.count(method, response.status)
        if response.status == 500:
            self.campaign.violation(f"500 on {method} {path}: {data[:300]!r}")
        return response.status, response.headers, data

    def close(self):
        if self.conn is not None:
            self.conn.close()


class Campaign:
    """What the clients were told, and the checks on every answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.base = None
        self.expected = {}          # job id -> expected summary (acknowledged by a 202)
        self.acked = []             # the same ids, in order, to pick from
        self.keyed = set()          # ids of keyed jobs (never deleted: the key is checked)
        self.done = []              # ids seen done, not keyed, to delete
        self.deleting = set()       # a DELETE is in flight
        self.removed = {}           # id -> time the DELETE's 200 arrived
        self.uncertain = set()      # a DELETE got no answer: removed or not
        self.seen = {}              # id -> the first done summary seen
        self.keys = {}              # key -> {"request", "want", "ids"}
        self.pending_keys = []      # keys whose POST has not been answered 202 yet
        self.violations = []
        self.statuses = collections.Counter()

    def count(self, method, status):
        with self.lock:
            self.statuses[(method, status)] += 1

    def violation(self, text):
        with self.lock:
            self.violations.append(text)
            shown = len(self.violations) <= 50
        if shown:
            print("VIOLATION:", text, flush=True)

    def acknowledge(self, job, want, key=None):
        with self.lock:
            if job not in self.expected:
                self.expected[job] = want
                self.acked.append(job)
            if key is not None:
                self.keyed.add(job)

    def check_result(self, job, sent_at, answer):
        """Checks a GET /api/get_results answer for an acknowledged job."""
        status, _, body = answer
        with self.lock:
            removed_at = self.removed.get(job)
            gone_ok = job in self.deleting or job in self.uncertain or removed_at is not None
        if status == 404:
            if not gone_ok:
                self.violation(f"acknowledged job {job} answered 404")
            return
        if status != 200:
            self.violation(f"GET /api/get_results/{job}: {status} {body[:200]!r}")
            return
        result = json.loads(body)
        if removed_at is not None and sent_at > removed_at:
            self.violation(f"job {job}, deleted or cancelled with a 200, answered {result}")
            return
        state = result.get("status")
        if state == "done":
            mismatch = summary_mismatch(result["data"], self.expected[job])
            if mismatch:
                self.violation(f"job {job} done with a wrong summary: {mismatch}")
            canonical = json.dumps(result["data"], sort_keys=True)
            with self.lock:
                first = self.seen.setdefault(job, canonical)
                if first == canonical and job not in self.keyed and job not in self.done:
                    self.done.append(job)
            if first != canonical:
                self.violation(f"job {job} answered two results: {first} then {canonical}")
        elif state in ("queued", "running"):
            with self.lock:
                was_done = job in self.seen
            if was_done:
                self.violation(f"job {job} answered done, later {state}")
        else:
            self.violation(f"job {job} answered {result}")


def list_jobs(campaign, client, rng):
    answer = client.call("GET", rng.choice(["/api/jobs?limit=50", "/api/num_jobs"]))
    if answer and answer[0] != 200:
        campaign.violation(f"listing answered {answer[0]} {answer[2][:200]!r}")


def client_loop(campaign, seed, stop, new_client=None, actions=None):
    """Sends `actions` ((share, function) pairs; by default this campaign's mix) at
    random until `stop`."""
    rng = random.Random(seed)
    client = (new_client or Client)(campaign)
    actions = actions or ACTIONS
    total = sum(share for share, _ in actions)
    while not stop.is_set():
        if client.target() is None:
            time.sleep(0.005)
            continue
        pick = rng.uniform(0, total)
        for share, action in actions:
            pick -= share
            if pick <= 0:
                break
        action(campaign, client, rng)
    client.close()


def post(campaign, client, request, want, key=None):
    """POSTs a submission; the job id on a 202, else None. A 503 (queue full, shutting
    down, low disk) and, for a keyed POST, a 409 (being accepted) are expected refusals."""
    path, body, headers = request
    if key is not None:
        headers = dict(headers, **{"Idempotency-Key": key})
    answer = client.call("POST", path, body, headers)
    if answer is None:
        return None
    status, response_headers, data = answer
    if status == 202:
        job = json.loads(data)["job_id"]
        campaign.acknowledge(job, want, key)
        return job
    if status == 503 or (status == 409 and key is not None):
        return None
    campaign.violation(f"POST {path} with {body[:200]!r} key {key}: {status} {data[:200]!r}")
    return None


def submit_new(campaign, client, rng):
    keyed = rng.random() < 0.25
    wall, teams = random_wall(rng, distinct=keyed), rng.choice([None, None, 1, 2, 3, 5])
    request, want = submission(rng, wall, teams), expected_summary(wall, teams)
    if not keyed:
        post(campaign, client, request, want)
        return
    key = str(uuid.UUID(int=rng.getrandbits(128)))
    with campaign.lock:
        campaign.keys[key] = {"request": request, "want": want, "ids": set()}
    keyed_post(campaign, client, key)


def keyed_post(campaign, client, key):
    entry = campaign.keys[key]
    job = post(campaign, client, entry["request"], entry["want"], key)
    with campaign.lock:
        if job is None:
            campaign.pending_keys.append(key)
            return
        entry["ids"].add(job)
        ids = sorted(entry["ids"])
    if len(ids) > 1:
        campaign.violation(f"Idempotency-Key {key} answered two jobs: {ids}")


def retry_key(campaign, client, rng):
    """Retries a key not yet answered 202, or replays one that was (same job expected)."""
    with campaign.lock:
        if campaign.pending_keys:
            key = campaign.pending_keys.pop(rng.randrange(len(campaign.pending_keys)))
        elif campaign.keys:
            key = rng.choice(list(campaign.keys))
        else:
            return
    keyed_post(campaign, client, key)


def pick_acked(campaign, rng):
    with campaign.lock:
        if not campaign.acked:
            return None
        # Mostly recent jobs (the ones whose state changes), sometimes any.
        if rng.random() < 0.7:
            return campaign.acked[-rng.randint(1, min(200, len(campaign.acked)))]
        return rng.choice(campaign.acked)


def poll(campaign, client, rng, query=""):
    job = pick_acked(campaign, rng)
    if job is None:
        return
    sent_at = time.monotonic()
    answer = client.call("GET", f"/api/get_results/{job}{query}")
    if answer is not None:
        campaign.check_result(job, sent_at, answer)


def query(campaign, client, rng):
    job = pick_acked(campaign, rng)
    if job is None:
        return
    want = campaign.expected[job]
    sent_at = time.monotonic()
    answer = client.call("GET", f"/api/jobs/{job}/profiles/overview")
    if answer is None:
        return
    status, _, body = answer
    with campaign.lock:
        gone_ok = (job in campaign.deleting or job in campaign.uncertain
                   or job in campaign.removed)
        removed_at = campaign.removed.get(job)
    if status == 200:
        if removed_at is not None and sent_at > removed_at:
            campaign.violation(f"deleted job {job} answered a query: {body[:200]!r}")
        elif json.loads(body).get("cost") != want["cost"]:
            campaign.violation(f"job {job} overview {body[:200]!r}, expected cost {want['cost']}")
    elif status == 404 and gone_ok or status == 409:
        pass
    else:
        campaign.violation(f"GET /api/jobs/{job}/profiles/overview: {status} {body[:200]!r}")


def delete(campaign, client, job, expect_done, cancel_only=False):
    """DELETEs `job`, or with `cancel_only` POSTs its cancel (which answers 409 for a job
    no longer queued), and records a 200 as the job gone for good."""
    with campaign.lock:
        if job in campaign.deleting or job in campaign.removed or job in campaign.uncertain:
            return
        campaign.deleting.add(job)
    if cancel_only:
        answer = client.call("POST", f"/api/jobs/{job}/cancel")
    else:
        answer = client.call("DELETE", f"/api/jobs/{job}")
    with campaign.lock:
        campaign.deleting.discard(job)
        if answer is None:
            if not client.refused:
                campaign.uncertain.add(job)
            return
        status, _, body = answer
        if status == 200:
            campaign.removed[job] = time.monotonic()
    if status == 200:
        state = json.loads(body).get("status")
        allowed = ("deleted",) if expect_done else ("cancelled",) if cancel_only else ("deleted", "cancelled")
        if state not in allowed:
            campaign.violation(f"DELETE of job {job} answered {body[:200]!r}")
    elif status == 503 or (status == 409 and not expect_done):
        pass  # "cannot be done yet", or a job already running
    else:
        campaign.violation(f"DELETE of job {job} (done: {expect_done}): {status} {body[:200]!r}")


def delete_done(campaign, client, rng):
    with campaign.lock:
        if not campaign.done:
            return
        job = campaign.done.pop(rng.randrange(len(campaign.done)))
    delete(campaign, client, job, expect_done=True)


def cancel_new(campaign, client, rng):
    wall, teams = random_wall(rng), rng.choice([None, 2])
    job = post(campaign, client, submission(rng, wall, teams), expected_summary(wall, teams))
    if job is not None:
        delete(campaign, client, job, expect_done=False)


# This campaign's mix of requests: (share, action).
ACTIONS = [(0.40, submit_new), (0.10, retry_key), (0.25, poll), (0.10, query),
           (0.08, delete_done), (0.05, cancel_new), (0.02, list_jobs)]


def parallel(campaign, count, work, items, new_client=None):
    """Runs `work(client, item)` over `items` from `count` threads."""
    items = list(items)
    def run(part):
        client = (new_client or Client)(campaign)
        for item in part:
            work(client, item)
        client.close()
    threads = [threading.Thread(target=run, args=(items[n::count],)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def sweep_removed(campaign, clients, new_client=None):
    """Every deleted or cancelled job must answer 404 (called after each start)."""
    with campaign.lock:
        removed = list(campaign.removed)
    def check(client, job):
        answer = client.call("GET", f"/api/get_results/{job}")
        if answer is not None and answer[0] != 404:
            campaign.violation(f"job {job}, deleted or cancelled with a 200, answered "
                               f"{answer[0]} {answer[2][:200]!r} after a restart")
    parallel(campaign, clients, check, removed, new_client)
    return len(removed)


def wait_for_no_jobs(campaign, deadline_seconds, new_client=None):
    client, deadline = (new_client or Client)(campaign), time.monotonic() + deadline_seconds
    try:
        while time.monotonic() < deadline:
            answer = client.call("GET", "/api/num_jobs")
            if answer and answer[0] == 200 and json.loads(answer[2])["num_jobs"] == 0:
                return True
            time.sleep(0.05)
        return False
    finally:
        client.close()


def final_checks(campaign, clients, new_client=None):
    """On a started server with nothing in flight: every job, acknowledged or not.
    Returns its figures and, in "results", the last answer of each job."""
    new_client = new_client or Client
    with campaign.lock:
        pending = list(dict.fromkeys(campaign.pending_keys))
        campaign.pending_keys.clear()
    # Keys never answered 202: one more try each (it must get its one job now).
    retry_client = new_client(campaign)
    for key in pending:
        keyed_post(campaign, retry_client, key)
    with campaign.lock:
        unanswered = list(campaign.pending_keys)
    for key in unanswered:
        campaign.violation(f"Idempotency-Key {key} still refused after the last restart")
    if pending and not wait_for_no_jobs(campaign, 60, new_client):
        campaign.violation("jobs of the last keyed retries still in flight after 60 s")

    listed, after = [], None
    while True:
        path = "/api/jobs?limit=1000" + (f"&after={after}" if after else "")
        answer = retry_client.call("GET", path)
        if answer is None or answer[0] != 200:
            campaign.violation(f"GET {path}: {answer and answer[0]}")
            break
        page = json.loads(answer[2])["data"]
        listed += [row["job_id"] for row in page]
        if len(page) < 1000:
            break
        after = page[-1]["job_id"]
    retry_client.close()

    results = {}
    def fetch(client, job):
        answer = client.call("GET", f"/api/get_results/{job}")
        results[job] = answer
    with campaign.lock:
        acked = list(campaign.expected)
    parallel(campaign, clients, fetch, set(listed) | set(acked), new_client)

    not_done = 0
    for job in acked:
        answer = results[job]
        if answer is None:
            campaign.violation(f"GET /api/get_results/{job}: no answer")
            continue
        with campaign.lock:
            removed = job in campaign.removed
            uncertain = job in campaign.uncertain
        if removed or (uncertain and answer[0] == 404):
            if answer[0] != 404:
                campaign.violation(f"removed job {job} answered {answer[0]} {answer[2][:200]!r}")
            continue
        campaign.check_result(job, 0, answer)
        if answer[0] == 200 and json.loads(answer[2]).get("status") != "done":
            not_done += 1
            campaign.violation(f"acknowledged job {job} is not done at the end: {answer[2][:200]!r}")

    with campaign.lock:
        removed_listed = [job for job in listed if job in campaign.removed]
        keyed_walls = {fingerprint(e["want"]): key for key, e in campaign.keys.items()}
    for job in removed_listed:
        campaign.violation(f"removed job {job} is still listed by /api/jobs")
    # A keyed retry makes no second job: match every job on the server to the keyed walls.
    jobs_of_key = collections.defaultdict(set)
    unknown = 0
    for job in listed:
        answer = results.get(job)
        if answer is None or answer[0] != 200:
            continue
        result = json.loads(answer[2])
        if job not in campaign.expected:
            unknown += 1
            if result.get("status") != "done":
                campaign.violation(f"unacknowledged job {job} is {result} at the end")
                continue
        if result.get("status") != "done":
            continue
        key = keyed_walls.get(fingerprint(result["data"]))
        if key is not None:
            jobs_of_key[key].add(job)
    for key, jobs in jobs_of_key.items():
        if len(jobs) > 1:
            campaign.violation(f"Idempotency-Key {key}: its wall is on the server as "
                               f"{len(jobs)} jobs {sorted(jobs)} (answered {sorted(campaign.keys[key]['ids'])})")
        elif campaign.keys[key]["ids"] and jobs != campaign.keys[key]["ids"]:
            campaign.violation(f"Idempotency-Key {key}: answered {campaign.keys[key]['ids']}, "
                               f"the server has {jobs}")
    return {"listed": len(listed), "unacknowledged_on_server": unknown, "not_done": not_done,
            "keys": len(campaign.keys), "keyed_jobs_matched": sum(map(len, jobs_of_key.values())),
            "results": results}


def seed_and_binary(campaign_name, seed):
    """The campaign's seed (`seed`, or a new one), its random numbers, and the server
    binary (`ICEWALL_BIN`); exits when there is no such binary."""
    seed = seed if seed is not None else random.randrange(1 << 32)
    binary = os.environ.get("ICEWALL_BIN", "target/release/icewall")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{campaign_name}: {binary} is not an executable (build it, or set ICEWALL_BIN)")
    return seed, random.Random(seed), binary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds-per-round", type=float, default=6,
                        help="most seconds of load before a round's kill (the kill comes at "
                             "a random moment in the second half of it)")
    parser.add_argument("--clients", type=int, default=6, help="client threads")
    parser.add_argument("--job-delay-ms", type=int, default=20,
                        help="--debug-job-delay-ms of the drain rounds and of half the "
                             "others, so that a queue builds up (0: never)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed, rng, binary = seed_and_binary("kill9", args.seed)

    campaign = Campaign()
    work = tempfile.mkdtemp(prefix="icewall-kill9-")
    print(f"kill9: {binary}, {args.rounds} rounds of up to {args.seconds_per_round} s, "
          f"{args.clients} clients, seed {seed}, work {work}", flush=True)
    kinds = ["load", "drain", "recovery"]
    rng.shuffle(kinds)
    kinds += [rng.choice(["load", "load", "drain", "recovery"]) for _ in range(args.rounds)]
    server, generation, startups, log = None, 0, [0.05], []
    started_at = time.monotonic()
    try:
        for number in range(1, args.rounds + 1):
            kind = kinds[number - 1]
            # A drain has something to drain only when jobs are slower than the clients.
            delay = args.job_delay_ms if kind == "drain" else rng.choice([0, args.job_delay_ms])
            generation += 1
            server = Server(file_store_args(binary, work, delay), work, generation)
            entry = {"round": number, "kind": kind, "job_delay_ms": delay}
            if kind == "recovery":
                # From the exec to a little after the listening line: mostly during the
                # recovery of the jobs the previous kills left, sometimes just after it.
                time.sleep(rng.uniform(0, statistics.median(startups) * 1.3))
                entry["listening_before_kill"] = server.listening() is not None
                entry["exit"] = server.kill()
                entry["acked_so_far"] = len(campaign.expected)
                print(json.dumps(entry), flush=True)
                log.append(entry)
                continue
            campaign.base = server.wait_listening()
            startups.append(server.startup_seconds)
            entry["startup_s"] = round(server.startup_seconds, 3)
            entry["removed_checked"] = sweep_removed(campaign, args.clients)
            stop = threading.Event()
            threads = [threading.Thread(target=client_loop, args=(campaign, rng.random(), stop))
                       for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(args.seconds_per_round / 2, args.seconds_per_round))
            if kind == "drain":
                answer = Client(campaign).call("POST", "/api/graceful_shutdown")
                entry["pending_at_shutdown"] = json.loads(answer[2])["pending"] if answer else None
                time.sleep(rng.uniform(0, 1.0))
                entry["drain_finished_before_kill"] = server.process.poll() is not None
            entry["exit"] = server.kill()
            if kind == "drain" and entry["drain_finished_before_kill"] and entry["exit"] != 0:
                campaign.violation(f"round {number}: the drain ended with exit {entry['exit']}")
            stop.set()
            for thread in threads:
                thread.join(timeout=3 * TIMEOUT)
            campaign.base = None
            entry["acked_so_far"] = len(campaign.expected)
            print(json.dumps(entry), flush=True)
            log.append(entry)

        generation += 1
        server = Server(file_store_args(binary, work, 0), work, generation)
        campaign.base = server.wait_listening()
        removed_checked = sweep_removed(campaign, args.clients)
        if not wait_for_no_jobs(campaign, 120):
            campaign.violation("jobs still queued or running 120 s after the last restart")
        final = final_checks(campaign, args.clients)
        del final["results"]
        answer = Client(campaign).call("POST", "/api/graceful_shutdown")
        if answer is None or answer[0] != 200:
            campaign.violation(f"the last graceful shutdown answered {answer and answer[0]}")
        try:
            final_exit = server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            final_exit = server.kill()
            campaign.violation("the last graceful shutdown did not exit within 60 s")
        if final_exit != 0:
            campaign.violation(f"the last graceful shutdown exited {final_exit}")
        for number in range(1, generation + 1):
            stderr = open(os.path.join(work, f"stderr.{number}")).read()
            if "panicked" in stderr:
                campaign.violation(f"start {number} panicked: {stderr[-1000:]}")
        logs = os.path.join(work, "logs")
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            with open(os.path.join(logs, name), errors="replace") as text:
                for line in text:
                    if "panicked" in line:
                        campaign.violation(f"{name}: {line.strip()[:300]}")

        statuses = collections.Counter()
        for (method, status), count in campaign.statuses.items():
            statuses[f"{method} {status}"] += count
        summary = {
            "seed": seed, "rounds": args.rounds,
            "kinds": dict(collections.Counter(entry["kind"] for entry in log)),
            "recovery_kills_before_listening": sum(
                1 for entry in log if entry["kind"] == "recovery" and not entry["listening_before_kill"]),
            "drains_killed": sum(1 for entry in log if entry["kind"] == "drain"
                                 and not entry["drain_finished_before_kill"]),
            **campaign_counts(campaign),
            "removed_checked_after_last_restart": removed_checked,
            **final,
            "statuses": dict(sorted(statuses.items())),
            "violations": len(campaign.violations),
            "seconds": round(time.monotonic() - started_at, 1),
        }
        print(json.dumps(summary, indent=2))
        print("kill9:", "PASS" if not campaign.violations else
              f"FAIL, {len(campaign.violations)} violations (the first 50 above); "
              f"the results directory is kept in {work}")
        return 0 if not campaign.violations else 1
    finally:
        if server is not None and server.process.poll() is None:
            server.kill()
        if not campaign.violations:
            shutil.rmtree(work, ignore_errors=True)


def campaign_counts(campaign):
    """What a campaign's summary counts of its jobs, in either campaign's summary."""
    return {
        "acknowledged_jobs": len(campaign.expected),
        "keyed_jobs": len(campaign.keyed),
        "deleted_or_cancelled": len(campaign.removed),
        "delete_unanswered": len(campaign.uncertain),
    }


if __name__ == "__main__":
    sys.exit(main())
