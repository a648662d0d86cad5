# gptqd container image: a Debian bookworm build stage and a slim runtime.
#
#   docker build -t gptqd .                          build the daemon and the CLI
#   docker build --build-arg RUN_TESTS=1 -t gptqd .  ... and run `make test` first (minutes)
#   docker run -d --name gptqd -p 127.0.0.1:8080:8080 -v gptqd:/var/lib/gptqd \
#       -e GPTQD_TOKENS=CHANGE-ME --stop-timeout 300 gptqd
#
# One volume, /var/lib/gptqd, holds the SQLite database, the artifacts, the
# jobs' work files and the Hub cache.  SIGTERM drains (running jobs go back
# to the queue at the next block boundary); give it time with --stop-timeout
# (docker stop's default is 10 s).  See deploy/README.md.

# ---- build ----
FROM debian:bookworm AS build
WORKDIR /src
# The dependency layer depends only on the install script, so editing the
# sources does not reinstall the packages.
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN bash deploy/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# RUN_TESTS=1 runs the test suite in the image (tests that need ../shared,
# the fixtures, skip with a message; so do those needing npm).
ARG RUN_TESTS=0
RUN make -j"$(nproc)" build/gptqd build/gptq \
 && if [ "$RUN_TESTS" = 1 ]; then make -j"$(nproc)" test; fi \
 && build/gptqd --version

# ---- runtime ----
FROM debian:bookworm-slim AS runtime
# The shared libraries build/gptqd links (ldd): libmicrohttpd, libcurl,
# OpenBLAS (which also provides libblas.so.3 and liblapack.so.3), LAPACKE,
# cJSON, SQLite, OpenSSL (libcrypto), PCRE2 and utf8proc; the CA bundle for
# the Hub and webhooks over https; curl for the HEALTHCHECK.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        curl \
        libcjson1 \
        libcurl4 \
        libmicrohttpd12 \
        libopenblas0-pthread \
        liblapacke \
        libpcre2-8-0 \
        libsqlite3-0 \
        libssl3 \
        libutf8proc2 \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged user with a fixed uid/gid (10001), so a Kubernetes
# runAsUser/fsGroup and a host bind mount's owner can match it.  Its home is
# the state directory (HF_HOME defaults to $HOME/.cache/huggingface there).
RUN groupadd --gid 10001 gptqd \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/gptqd --no-create-home \
        --shell /usr/sbin/nologin gptqd \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/gptqd

COPY --from=build /src/build/gptqd /src/build/gptq /usr/local/bin/
COPY --from=build /src/deploy/README.md /usr/local/share/doc/gptqd/README.md

ENV GPTQD_LISTEN=0.0.0.0:8080 \
    GPTQD_DB=/var/lib/gptqd/gptqd.db \
    GPTQD_DATA_DIR=/var/lib/gptqd \
    HOME=/var/lib/gptqd

# Declared after the directory is created and chowned, so a new named volume
# starts owned by gptqd.
VOLUME /var/lib/gptqd
WORKDIR /var/lib/gptqd
USER 10001:10001
EXPOSE 8080

# Liveness of the process; the port follows GPTQD_LISTEN (the daemon must
# listen on 0.0.0.0, 127.0.0.1 or [::] for the check to reach it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS --max-time 4 -o /dev/null "http://127.0.0.1:${GPTQD_LISTEN##*:}/healthz" || exit 1

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gptqd"]
