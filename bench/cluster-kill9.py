#!/usr/bin/env python3
"""Kill -9 campaign against cluster mode: N nodes on one throwaway PostgreSQL under
mixed load, nodes killed with SIGKILL and the database restarted at random moments,
then every acknowledged job checked on every node and in the database's tables.

Builds nothing: the binary is ICEWALL_BIN (default target/release/icewall). The database
is started as bench/postgres.sh starts it (Debian's package, fsync on, as the postgres
user when root). Each node runs with a short --lease (--lease, 2s) so that the jobs of a
dead node come back within the run. Load goes on for the whole campaign against all
the nodes that listen, from bench/kill9.py's mix (text and JSON POSTs, Idempotency-Keys
and their retries, polls, overview queries, DELETEs of done jobs and cancels) with, here,
keyed retries sent to another node, another request under a key already answered
(422 on any node), `?wait=` polls, day and per-profile queries checked against the
wall, and cancels by POST .../cancel. Each round ends in one of:
  kill-one       SIGKILL of a random node, started again after a moment;
  kill-two       SIGKILL of two nodes at once;
  kill-starting  SIGKILL of a node, then of its replacement while it starts;
  drain          SIGTERM of a node (it finishes what it claimed and leaves the queue
                 to the others), and SIGKILL if it has not exited a moment later;
  db-immediate   `pg_ctl restart -m immediate` (a crash: recovery from the WAL);
  db-fast        `pg_ctl restart -m fast` (sessions ended, a checkpoint);
  db-down        `pg_ctl stop -m immediate`, one to three leases down, then a start;
a database restart sometimes with a node killed while the database is down.
Answers 503 are what a node says while the database is away: they are counted, and
treated as no answer (a DELETE answered 503 may or may not have happened).

At the end every node is running and the queue drained, and the campaign checks: every
job answered 202 (and not deleted or cancelled by a 200) is done with the right summary
on every node, every node gives the same answers, deleted and cancelled jobs answer 404
on every node and have no rows left, no Idempotency-Key made two jobs (by the answers,
by matching summaries and by the key's rows), nothing answered 500 or panicked, each done
job has one result row and no other job has one, no job is queued, running or failed,
every job's `attempt` is between 1 and one more than the kills and restarts, no attempt
was charged to a node never killed (a job it ran, run again elsewhere: from the nodes'
logs), and no job was logged finished by two nodes. It exits 1 on any violation, printing each.
Standard library only; stops by itself.
Usage: bench/cluster-kill9.py [--rounds 8] [--seconds-per-round 6] [--nodes 3]
"""

import argparse
import collections
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import kill9
from kill9 import FOOT_COST, FOOT_ICE, Server, delete, pick_acked, submission, random_wall

BENCH = os.path.dirname(os.path.abspath(__file__))


class Postgres:
    """The throwaway database, through bench/postgres.sh's own functions."""

    def __init__(self):
        script = (f". {BENCH}/postgres.sh && postgres_start && "
                  "url=$(postgres_create_database icewall) && "
                  'printf "%s\\n" "$url" "$POSTGRES_DIR" "$POSTGRES_BIN" "$POSTGRES_PORT"')
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr[-2000:]}")
        self.url, self.dir, self.bin, self.port = done.stdout.split()

    def as_owner(self, args):
        # pg_ctl refuses root.
        return (["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []) + args

    def restart(self, mode):
        """`pg_ctl restart -m mode`, waiting until it takes connections again."""
        subprocess.run(self.as_owner([f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-m", mode,
                                      "-l", f"{self.dir}/postgres.log", "-w", "-t", "60",
                                      "restart"]),
                       check=True, stdout=subprocess.DEVNULL)

    def stop_for(self, seconds):
        """An outage: an immediate stop, `seconds` down, then a start with the options
        it ran with (pg_ctl keeps them in postmaster.opts for its restarts alone)."""
        data = f"{self.dir}/data"
        with open(f"{data}/postmaster.opts") as opts:
            words = shlex.split(opts.read())[1:]
        at = words.index("-D")
        options = " ".join(shlex.quote(word) for word in words[:at] + words[at + 2:])
        pg_ctl = [f"{self.bin}/pg_ctl", "-D", data, "-l", f"{self.dir}/postgres.log", "-w", "-t", "60"]
        subprocess.run(self.as_owner(pg_ctl + ["-m", "immediate", "stop"]), check=True,
                       stdout=subprocess.DEVNULL)
        time.sleep(seconds)
        subprocess.run(self.as_owner(pg_ctl + ["-o", options, "start"]), check=True,
                       stdout=subprocess.DEVNULL)

    def query(self, sql):
        """The rows of `sql`, each a list of text fields."""
        done = subprocess.run([f"{self.bin}/psql", "-X", "-A", "-t", "-F", "\t", "-v",
                               "ON_ERROR_STOP=1", "-h", self.dir, "-p", self.port,
                               "-U", "postgres", "-d", "icewall", "-c", sql],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def stop(self, keep_log_in=None):
        if keep_log_in:
            shutil.copy(f"{self.dir}/postgres.log", os.path.join(keep_log_in, "postgres.log"))
        env = dict(os.environ, POSTGRES_DIR=self.dir, POSTGRES_BIN=self.bin)
        subprocess.run(["bash", "-c", f". {BENCH}/postgres.sh && postgres_stop"], env=env)


# How long after a database restart a node may still answer 503 (its pool's connections
# broken by the restart are found and made again).
DATABASE_SETTLE = 5.0


class ClusterCampaign(kill9.Campaign):
    """kill9's bookkeeping, plus the nodes that listen now and what was done to them."""

    def __init__(self):
        super().__init__()
        self.up = {}                # node slot -> base URL, while it listens
        self.disruptions = 0        # node kills and database restarts, for the attempts
        self.database_restarting = False
        self.database_back_at = 0.0
        # 503s more than DATABASE_SETTLE after the database came back: a node slow to
        # come back to it, or a database too slow for --database-timeout.
        self.late_unavailable = collections.Counter()


class NodeClient(kill9.Client):
    """A client of the whole cluster: each request goes to a listening node, mostly the
    one before, sometimes another; `pinned` keeps it on one node."""

    def __init__(self, campaign, pinned=None):
        super().__init__(campaign)
        self.pinned = pinned
        self.rng = random.Random()
        self.current = None

    def target(self):
        if self.pinned is not None:
            return self.pinned
        with self.campaign.lock:
            bases = list(self.campaign.up.values())
        if not bases:
            return None
        if self.current not in bases or self.rng.random() < 0.2:
            self.current = self.rng.choice(bases)
        return self.current

    def move(self):
        """The next request goes to another node, if another listens."""
        with self.campaign.lock:
            others = [base for base in self.campaign.up.values() if base != self.current]
        if others:
            self.current = self.rng.choice(others)

    def call(self, method, path, body=None, headers=None):
        answer = super().call(method, path, body, headers)
        if answer is not None and answer[0] == 503:
            # The database away (or slow): an answer that promises nothing either way.
            campaign = self.campaign
            with campaign.lock:
                if not campaign.database_restarting and \
                        time.monotonic() - campaign.database_back_at > DATABASE_SETTLE:
                    try:
                        reason = json.loads(answer[2]).get("reason", "")[:120]
                    except ValueError:
                        reason = repr(answer[2][:120])
                    # A draining node's refusals are its drain's, not the database's.
                    if "shutting down" not in reason:
                        campaign.late_unavailable[f"{method} {reason}"] += 1
            self.refused = False
            return None
        return answer


def pinned_to(base):
    return lambda campaign: NodeClient(campaign, pinned=base)


def retry_key_elsewhere(campaign, client, rng):
    client.move()
    kill9.retry_key(campaign, client, rng)


def wait_poll(campaign, client, rng):
    kill9.poll(campaign, client, rng, f"?wait={rng.choice([1, 2])}")


def day_figures(wall, profile, day):
    """Ice on `day` and cost up to it of a profile, with unlimited crews: every section
    below 30 feet gets a foot a day until it is done."""
    gaps = [30 - height for height in wall[profile - 1]]
    ice = sum(1 for gap in gaps if gap >= day) * FOOT_ICE
    cost = sum(min(gap, day) for gap in gaps) * FOOT_COST
    return ice, cost


def day_query(campaign, client, rng):
    """A day's ice or the cost up to a day of one profile, checked against the wall for
    unlimited crews (a team's schedule is not computed here: its answer must be 200)."""
    job = pick_acked(campaign, rng)
    if job is None:
        return
    want = campaign.expected[job]
    profile = rng.randint(1, len(want["wall"]))
    day = rng.choice([1, 2, rng.randint(1, 31), rng.randint(1, 40)])
    overview = rng.random() < 0.5
    path = f"/api/jobs/{job}/profiles/{profile}/{'overview' if overview else 'days'}/{day}"
    sent_at = time.monotonic()
    answer = client.call("GET", path)
    if answer is None:
        return
    status, _, body = answer
    with campaign.lock:
        removed_at = campaign.removed.get(job)
        gone_ok = (job in campaign.deleting or job in campaign.uncertain
                   or removed_at is not None)
    if status == 200:
        if removed_at is not None and sent_at > removed_at:
            campaign.violation(f"deleted job {job} answered {path}: {body[:200]!r}")
            return
        if want["num_teams"] is not None:
            return
        ice, cost = day_figures(want["wall"], profile, day)
        got = json.loads(body)
        expected = {"day": day, "cost": cost} if overview else {"day": day, "ice_amount": ice}
        if got != expected:
            campaign.violation(f"{path}: {body[:200]!r}, expected {expected}")
    elif not (status == 409 or status == 404 and gone_ok):
        campaign.violation(f"{path}: {status} {body[:200]!r}")


def cancel_by_post(campaign, client, rng):
    wall, teams = random_wall(rng), rng.choice([None, 2])
    want = kill9.expected_summary(wall, teams)
    job = kill9.post(campaign, client, submission(rng, wall, teams), want)
    if job is not None:
        if rng.random() < 0.5:
            client.move()
        delete(campaign, client, job, expect_done=False, cancel_only=True)


def reuse_key(campaign, client, rng):
    """Another wall under a key already answered, on any node: 422, never a job (409
    while the key's first request is still being stored)."""
    with campaign.lock:
        answered = [key for key, entry in campaign.keys.items() if entry["ids"]]
        if not answered:
            return
        key = rng.choice(answered)
    client.move()
    wall, teams = random_wall(rng), rng.choice([None, 2])
    path, body, headers = submission(rng, wall, teams)
    answer = client.call("POST", path, body, dict(headers, **{"Idempotency-Key": key}))
    if answer is not None and answer[0] not in (409, 422):
        campaign.violation(f"another request with Idempotency-Key {key} answered {answer[0]} "
                           f"{answer[2][:200]!r}")


ACTIONS = [(0.34, kill9.submit_new), (0.10, retry_key_elsewhere), (0.14, kill9.poll),
           (0.07, wait_poll), (0.08, kill9.query), (0.08, day_query),
           (0.08, kill9.delete_done), (0.04, kill9.cancel_new), (0.04, cancel_by_post),
           (0.02, kill9.list_jobs), (0.01, reuse_key)]


class Cluster:
    """The nodes, each in a slot that a new process takes after a kill."""

    def __init__(self, args, binary, work, database, campaign, rng):
        self.args, self.binary, self.work = args, binary, work
        self.database, self.campaign, self.rng = database, campaign, rng
        self.nodes = {}             # slot -> Server
        self.starts = 0
        self.startups = [0.3]

    def command(self, slot, job_delay_ms):
        node_dir = os.path.join(self.work, f"node-{slot}")
        args = [self.binary, "serve", "--bind", "127.0.0.1:0",
                "--database-url", self.database.url,
                "--results-dir", os.path.join(node_dir, "results"),
                "--logs-dir", os.path.join(node_dir, "logs"), "--log-format", "json",
                "--lease", self.args.lease, "--max-attempts", str(self.args.max_attempts),
                "--workers", "2", "--database-pool-size", "8"]
        if job_delay_ms:
            args += ["--debug-job-delay-ms", str(job_delay_ms)]
        return args + os.environ.get("ICEWALL_FLAGS", "").split()

    def start(self, slot, wait=True):
        """Starts a node in `slot`; with `wait`, until it listens and takes load."""
        self.starts += 1
        # Slow jobs on some nodes, so that cancels find queued jobs and kills running ones
        # (and, ten times as slow, jobs that each take a kill's moment).
        delay = self.rng.choice([0, self.args.job_delay_ms, 10 * self.args.job_delay_ms])
        server = Server(self.command(slot, delay), self.work, f"{slot}.{self.starts}")
        self.nodes[slot] = server
        if wait:
            self.listen(slot)
        return server

    def listen(self, slot):
        server = self.nodes[slot]
        try:
            base = server.wait_listening()
        except RuntimeError as error:
            self.campaign.violation(f"node {server.name} did not start: {error}")
            server.kill()
            self.start(slot)
            return
        self.startups.append(server.startup_seconds)
        with self.campaign.lock:
            self.campaign.up[slot] = base

    def kill(self, slot):
        with self.campaign.lock:
            self.campaign.up.pop(slot, None)
            self.campaign.disruptions += 1
        return self.nodes[slot].kill()

    def stop_all(self):
        """Graceful shutdowns of every node at once; the exit codes."""
        for server in self.nodes.values():
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        exits = {}
        for slot, server in self.nodes.items():
            try:
                exits[slot] = server.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                exits[slot] = f"killed after 60 s: {server.kill()}"
        return exits


def run_round(cluster, kind, entry):
    rng, lease = cluster.rng, cluster.args.lease_seconds
    slots = sorted(cluster.campaign.up)
    if kind.startswith("db-"):
        doomed = rng.choice(slots) if rng.random() < 0.3 else None
        failed = []
        def outage():
            try:
                if kind == "db-down":
                    # Longer than a lease: every node's last beat is old when it is back.
                    cluster.database.stop_for(rng.uniform(lease, 3 * lease))
                else:
                    cluster.database.restart(kind[3:])
            except (OSError, subprocess.SubprocessError) as error:
                failed.append(error)
        restart = threading.Thread(target=outage)
        with cluster.campaign.lock:
            cluster.campaign.disruptions += 1
            cluster.campaign.database_restarting = True
        started = time.monotonic()
        restart.start()
        if doomed is not None:
            time.sleep(rng.uniform(0, 0.5))
            entry["killed_while_database_down"] = doomed
            cluster.kill(doomed)
        restart.join()
        if failed:
            # The campaign cannot go on without its database.
            raise RuntimeError(f"the database did not come back: {failed[0]}")
        with cluster.campaign.lock:
            cluster.campaign.database_restarting = False
            cluster.campaign.database_back_at = time.monotonic()
        entry["restart_s"] = round(time.monotonic() - started, 2)
        if doomed is not None:
            cluster.start(doomed)
        return
    if kind == "drain":
        slot = rng.choice(slots)
        server = cluster.nodes[slot]
        with cluster.campaign.lock:
            cluster.campaign.disruptions += 1
        # It stays among the nodes the clients use: it refuses jobs and answers reads
        # until it stops.
        server.process.send_signal(signal.SIGTERM)
        try:
            entry["drain_exit"] = server.process.wait(timeout=rng.uniform(0, 2 * lease))
            if entry["drain_exit"] != 0:
                cluster.campaign.violation(f"node {server.name} drained and exited {entry['drain_exit']}")
        except subprocess.TimeoutExpired:
            entry["killed_while_draining"] = slot
            cluster.kill(slot)
        with cluster.campaign.lock:
            cluster.campaign.up.pop(slot, None)
        cluster.start(slot)
        return
    victims = rng.sample(slots, 2 if kind == "kill-two" and len(slots) > 1 else 1)
    entry["killed"] = victims
    for slot in victims:
        cluster.kill(slot)
    # Sometimes the cluster goes on without them for a while.
    time.sleep(rng.choice([0, 0, rng.uniform(0, lease)]))
    if kind == "kill-starting":
        slot = victims[0]
        cluster.start(slot, wait=False)
        time.sleep(rng.uniform(0, statistics.median(cluster.startups) * 1.3))
        entry["listening_before_second_kill"] = cluster.nodes[slot].listening() is not None
        cluster.kill(slot)
    for slot in victims:
        cluster.start(slot)


def in_flight(database):
    return int(database.query(
        "SELECT count(*) FROM icewall_jobs WHERE state IN ('queued', 'running')")[0][0])


def wait_drained(campaign, database, deadline_seconds):
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if in_flight(database) == 0:
            return True
        time.sleep(0.2)
    return False


# What every node must answer alike of every job.
SAME_EVERYWHERE = ["/api/get_results/{job}", "/api/jobs/{job}", "/api/jobs/{job}/profiles/overview",
                   "/api/jobs/{job}/log", "/api/jobs/{job}/profiles?limit=2"]


def same_on_every_node(campaign, cluster, clients, jobs):
    """Every node answers every job's result, record, overview, log and profiles as the
    first node does (status and body)."""
    bases = [cluster.campaign.up[slot] for slot in sorted(cluster.campaign.up)]
    answers = {}
    def fetch(client, item):
        got = [client.call("GET", path.format(job=item[1])) for path in SAME_EVERYWHERE]
        answers[item] = [(answer[0], answer[2]) if answer else None for answer in got]
    for base in bases:
        kill9.parallel(campaign, clients, fetch, [(base, job) for job in jobs], pinned_to(base))
    compared = 0
    for job in jobs:
        first = answers[(bases[0], job)]
        for base in bases[1:]:
            theirs = answers[(base, job)]
            for path, mine, other in zip(SAME_EVERYWHERE, first, theirs):
                if mine != other:
                    campaign.violation(f"{path.format(job=job)}: {bases[0]} answered "
                                       f"{mine and (mine[0], mine[1][:200])}, {base} "
                                       f"{other and (other[0], other[1][:200])}")
            compared += 1
    return compared


def database_checks(campaign, database, max_attempts):
    """What the tables say: one result per done job, nothing left of removed jobs, one
    job per key, sane attempts."""
    states = dict(database.query("SELECT state, count(*) FROM icewall_jobs GROUP BY state"))
    for state in ("queued", "running", "failed"):
        if int(states.get(state, 0)):
            rows = database.query(f"SELECT id, attempt, failure FROM icewall_jobs "
                                  f"WHERE state = '{state}' LIMIT 20")
            campaign.violation(f"{states[state]} jobs {state} at the end: {rows}")
    for what, sql in [
        ("done jobs without a result", """SELECT id FROM icewall_jobs AS job WHERE state = 'done'
            AND NOT EXISTS (SELECT 1 FROM icewall_results WHERE job_id = job.id)"""),
        ("results of no done job", """SELECT r.job_id FROM icewall_results AS r
            LEFT JOIN icewall_jobs AS job ON job.id = r.job_id
            WHERE job.id IS NULL OR job.state <> 'done'"""),
        ("team log chunks of no done job", """SELECT DISTINCT l.job_id FROM icewall_team_logs AS l
            LEFT JOIN icewall_jobs AS job ON job.id = l.job_id
            WHERE job.id IS NULL OR job.state <> 'done'"""),
        ("requests of no job", """SELECT q.job_id FROM icewall_requests AS q
            LEFT JOIN icewall_jobs AS job ON job.id = q.job_id WHERE job.id IS NULL"""),
        ("jobs without their request", """SELECT id FROM icewall_jobs AS job
            WHERE NOT EXISTS (SELECT 1 FROM icewall_requests WHERE job_id = job.id)"""),
    ]:
        rows = database.query(sql + " LIMIT 20")
        if rows:
            campaign.violation(f"{what}: {[row[0] for row in rows]}")

    rows = database.query("SELECT id, state, attempt, coalesce(idempotency_key, '') FROM icewall_jobs")
    jobs = {row[0]: (row[1], int(row[2]), row[3]) for row in rows}
    bound = min(max_attempts, 1 + campaign.disruptions)
    attempts = collections.Counter()
    for job, (state, attempt, _) in jobs.items():
        attempts[attempt] += 1
        if state == "done" and not 1 <= attempt <= bound:
            campaign.violation(f"job {job} done at attempt {attempt}: not within 1 and {bound} "
                               f"(--max-attempts {max_attempts}, {campaign.disruptions} disruptions)")
    with campaign.lock:
        removed = set(campaign.removed)
        acked = set(campaign.expected)
        keys = {key: set(entry["ids"]) for key, entry in campaign.keys.items()}
    for job in removed & set(jobs):
        campaign.violation(f"job {job}, deleted or cancelled with a 200, still has its row {jobs[job]}")
    for job in acked - removed - campaign.uncertain - set(jobs):
        campaign.violation(f"acknowledged job {job} has no row")
    rows_of_key = collections.defaultdict(set)
    for job, (_, _, key) in jobs.items():
        if key:
            rows_of_key[key].add(job)
    for key, ids in keys.items():
        if ids and rows_of_key.get(key, set()) - ids:
            campaign.violation(f"Idempotency-Key {key}: answered {sorted(ids)}, "
                               f"its rows {sorted(rows_of_key[key])}")
    figures = {"rows": len(jobs), "attempts": dict(sorted(attempts.items())), "attempt_bound": bound}
    return figures, {job: attempt for job, (_, attempt, _) in jobs.items()}


def node_ids(campaign, bases):
    """The node ids of the nodes at `bases`, from their /metrics."""
    ids = set()
    client = NodeClient(campaign)
    for base in bases:
        client.pinned = base
        answer = client.call("GET", "/metrics")
        if answer is not None and answer[0] == 200:
            ids |= set(re.findall(r'icewall_node_info\{node_id="([^"]+)"\}', answer[2].decode()))
    client.close()
    return ids


def log_checks(campaign, work, survivors, attempts):
    """No panic anywhere, and no job logged finished (its result kept) on two nodes or
    twice on one. A node killed before its log reached the disk logs less, never more.
    And no attempt charged to a node never killed (`survivors`): a result it dropped
    ("the job's lease passed to another node") with the job's attempt (`attempts`, from
    the table) past the dropped one, when no other node started that attempt. (Another
    may have: a claim is committed without waiting for the disk, so the database's crash
    can undo it, and the job is claimed again under the same attempt.)"""
    finished = collections.Counter()
    started = collections.defaultdict(set)      # (job, attempt) -> nodes
    dropped_on_survivors = []                   # (job, attempt, node)
    lines = 0
    for root, _, names in os.walk(work):
        for name in names:
            path = os.path.join(root, name)
            if name.startswith("stderr."):
                text = open(path, errors="replace").read()
                if "panicked" in text:
                    campaign.violation(f"{name} panicked: {text[-1000:]}")
            elif name.startswith("icewall.log"):
                with open(path, errors="replace") as log:
                    for line in log:
                        lines += 1
                        if "panicked" in line:
                            campaign.violation(f"{path}: {line.strip()[:300]}")
                        if '"job finished"' in line:
                            try:
                                finished[json.loads(line)["job_id"]] += 1
                            except (ValueError, KeyError):
                                pass
                        elif '"job started"' in line or "result dropped" in line:
                            entry = json.loads(line)
                            job, attempt, node = entry["job_id"], entry["attempt"], entry["node_id"]
                            if "result dropped" not in line:
                                started[(job, attempt)].add(node)
                            elif node in survivors:
                                dropped_on_survivors.append((job, attempt, node))
    for job, count in finished.items():
        if count > 1:
            campaign.violation(f"job {job} logged finished {count} times: its result stored twice?")
    for job, attempt, node in dropped_on_survivors:
        if attempts.get(job, 0) > attempt and started[(job, attempt)] <= {node}:
            campaign.violation(f"job {job}: attempt {attempt} on node {node}, never killed, "
                               f"was charged: it ended at attempt {attempts[job]}")
    return {"log_lines": lines, "jobs_logged_finished": len(finished),
            "results_dropped_on_nodes_never_killed": len(dropped_on_survivors)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds-per-round", type=float, default=6,
                        help="most seconds of load before a round's kill or restart (it comes "
                             "at a random moment in the second half of it)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6, help="client threads")
    parser.add_argument("--lease", default="2s", help="every node's --lease")
    parser.add_argument("--max-attempts", type=int, default=10,
                        help="every node's --max-attempts: above the kills a job may meet, "
                             "so that no acknowledged job ends failed")
    parser.add_argument("--job-delay-ms", type=int, default=20,
                        help="--debug-job-delay-ms of a third of the node starts, and ten "
                             "times it of another third (0: never)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true",
                        help="keep the nodes' logs and the database's even when it passes")
    args = parser.parse_args()
    args.lease_seconds = float(args.lease.removesuffix("s"))
    seed, rng, binary = kill9.seed_and_binary("cluster-kill9", args.seed)

    campaign = ClusterCampaign()
    work = tempfile.mkdtemp(prefix="icewall-cluster-kill9-")
    print(f"cluster-kill9: {binary}, {args.nodes} nodes, {args.rounds} rounds of up to "
          f"{args.seconds_per_round} s, {args.clients} clients, lease {args.lease}, seed {seed}, "
          f"work {work}", flush=True)
    kinds = ["kill-one", "kill-two", "kill-starting", "drain", "db-immediate", "db-fast",
             "db-down"]
    rng.shuffle(kinds)
    kinds += [rng.choice(["kill-one", "kill-one", "kill-two", "kill-starting", "drain",
                          "db-immediate", "db-fast", "db-down"]) for _ in range(args.rounds)]
    database = Postgres()
    cluster = Cluster(args, binary, work, database, campaign, rng)
    stop = threading.Event()
    threads, log = [], []
    started_at = time.monotonic()
    try:
        for slot in range(args.nodes):
            cluster.start(slot)
        threads = [threading.Thread(target=kill9.client_loop,
                                    args=(campaign, rng.random(), stop, NodeClient, ACTIONS))
                   for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for number in range(1, args.rounds + 1):
            kind = kinds[number - 1]
            time.sleep(rng.uniform(args.seconds_per_round / 2, args.seconds_per_round))
            entry = {"round": number, "kind": kind}
            run_round(cluster, kind, entry)
            entry["acked_so_far"] = len(campaign.expected)
            print(json.dumps(entry), flush=True)
            log.append(entry)
        stop.set()
        for thread in threads:
            thread.join(timeout=3 * kill9.TIMEOUT)

        if not wait_drained(campaign, database, 120):
            campaign.violation("jobs still queued or running 120 s after the last round")
        bases = [campaign.up[slot] for slot in sorted(campaign.up)]
        removed_checked = 0
        for base in bases:
            removed_checked += kill9.sweep_removed(campaign, args.clients, pinned_to(base))
        final = kill9.final_checks(campaign, args.clients, pinned_to(bases[0]))
        compared = same_on_every_node(campaign, cluster, args.clients, list(final.pop("results")))
        tables, attempts = database_checks(campaign, database, args.max_attempts)
        survivors = node_ids(campaign, list(campaign.up.values()))
        exits = cluster.stop_all()
        for slot, code in exits.items():
            if code != 0:
                campaign.violation(f"node {slot}'s graceful shutdown exited {code}")
        logs = log_checks(campaign, work, survivors, attempts)

        statuses = collections.Counter()
        for (method, status), count in campaign.statuses.items():
            statuses[f"{method} {status}"] += count
        summary = {
            "seed": seed, "rounds": args.rounds, "nodes": args.nodes,
            "kinds": dict(collections.Counter(entry["kind"] for entry in log)),
            "node_starts": cluster.starts,
            "disruptions": campaign.disruptions,
            **kill9.campaign_counts(campaign),
            "removed_checked_on_every_node": removed_checked,
            "jobs_compared_across_nodes": compared,
            "unavailable_long_after_a_restart": dict(campaign.late_unavailable),
            **final, **tables, **logs,
            "statuses": dict(sorted(statuses.items())),
            "violations": len(campaign.violations),
            "seconds": round(time.monotonic() - started_at, 1),
        }
        print(json.dumps(summary, indent=2))
        print("cluster-kill9:", "PASS" if not campaign.violations else
              f"FAIL, {len(campaign.violations)} violations (the first 50 above); "
              f"the nodes' logs and the database's are kept in {work}")
        if args.keep and not campaign.violations:
            print(f"cluster-kill9: the nodes' logs and the database's are kept in {work}")
        return 0 if not campaign.violations else 1
    finally:
        stop.set()
        for server in cluster.nodes.values():
            if server.process.poll() is None:
                server.kill()
        kept = campaign.violations or args.keep
        database.stop(keep_log_in=work if kept else None)
        if not kept:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
