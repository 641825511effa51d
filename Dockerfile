# syntax=docker/dockerfile:1
#
# icewall: container image of the job server (`icewall serve`), built from this tree.
#
#   docker build -t icewall .
#   docker run -d --name icewall -p 8080:8080 \
#       -e ICEWALL_ADMIN_TOKEN=change-me icewall
#   docker stop -t 300 icewall
#
# The server binds 0.0.0.0:8080 inside the container. Bound beyond loopback and without
# ICEWALL_ADMIN_TOKEN, the admin endpoints (GET/POST /api/graceful_shutdown,
# DELETE /api/jobs/<id> and POST /api/jobs/<id>/cancel) answer 403: set the token (then send
# `Authorization: Bearer <token>`) to enable graceful shutdown and deletion over HTTP.
# `docker stop` sends SIGTERM, which always works and drains the queue (queued and
# running jobs finish, then exit 0); its default grace period is only 10 s before
# SIGKILL, so give it longer (`docker stop -t`, compose `stop_grace_period`) if the
# queue can be long. An accepted job cut off by SIGKILL is not lost as long as the
# results volume is kept: it runs again on the next start.
#
# Results and logs are VOLUMEs under /var/lib/icewall, owned by uid/gid 10001. A new
# named volume inherits that ownership; a bind-mounted host directory must be writable
# by uid 10001 (`chown 10001:10001 DIR`), or the server stops at start-up with exit 1.
# The HEALTHCHECK assumes port 8080: change it too if you change ICEWALL_BIND.

ARG RUST_VERSION=1.95

# ---- build ------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build

# Cargo.toml declares [[test]] targets in unittests/ and a [[bench]] in benches/: the
# manifest only parses if those files exist, even though only the binary is built.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The page's files, which the binary embeds.
COPY web ./web
COPY benches ./benches
COPY unittests ./unittests

# The registry and target directories are BuildKit cache mounts (kept between builds,
# not in the image), so the binary is copied out of target/ in the same step. The
# release profile strips debug info (Cargo.toml), so the image gets the small binary.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin icewall \
    && install -m 0755 target/release/icewall /usr/local/bin/icewall

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# curl is for the HEALTHCHECK.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 icewall \
    && useradd --system --uid 10001 --gid icewall --home-dir /var/lib/icewall \
        --no-create-home --shell /usr/sbin/nologin icewall \
    && install -d -o icewall -g icewall -m 0750 \
        /var/lib/icewall /var/lib/icewall/results /var/lib/icewall/logs

COPY --from=builder /usr/local/bin/icewall /usr/local/bin/icewall

WORKDIR /var/lib/icewall
# The server log goes to stdout, where `docker logs` and log collectors read it
# (`-e ICEWALL_LOG_FORMAT=json` for one JSON object a line; `-e ICEWALL_LOG_TARGET=file`
# for the rotated file in the logs volume).
ENV ICEWALL_BIND=0.0.0.0:8080 \
    ICEWALL_RESULTS_DIR=/var/lib/icewall/results \
    ICEWALL_LOGS_DIR=/var/lib/icewall/logs \
    ICEWALL_LOG_TARGET=stdout

# Declared after the directories are created and chowned, so that new volumes are
# initialised with that ownership.
VOLUME ["/var/lib/icewall/results", "/var/lib/icewall/logs"]

# Numeric, so that runtimes enforcing runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || exit 1

# SIGTERM drains the queue and exits 0 (the same path as /api/graceful_shutdown).
STOPSIGNAL SIGTERM
ENTRYPOINT ["icewall"]
CMD ["serve"]
