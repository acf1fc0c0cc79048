# syntax=docker/dockerfile:1
# sigverify: a slim, non-root image that runs `sigverify serve` (which execs gunicorn).
#
#   docker build -t sigverify:0.1.0 .
#   docker run --rm --read-only -p 8080:8080 sigverify:0.1.0
# (--read-only works as is: the data directory and /tmp are VOLUMEs, so they stay writable.)
#
# Both stages use the same base, pinned by digest: the venv built in the first stage points at
# /usr/local/bin/python3.11, so the runtime must be the same Python build.
#
# Base digest: the multi-platform index of python:3.11-slim-bookworm (3.11.16) as published on
# Docker Hub in 2026-09/10. It could not be pulled or re-resolved from the machine this file was
# written on (no Docker engine, no Docker Hub access); refresh it on every base bump with
#   docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# ---- builder: dependencies from the hashed lock first, the code after --------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# /opt/build holds the build backend (hash-pinned setuptools); /opt/venv is what ships, created
# without pip so that no installer ends up in the runtime image.
RUN python -m venv /opt/build \
    && python -m venv --without-pip /opt/venv

# Dependencies only: this layer is rebuilt when a lock file changes, not when the code does.
COPY requirements/build.lock requirements/runtime.lock requirements/
RUN /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.lock \
    && /opt/build/bin/pip --python /opt/venv/bin/python install \
        --require-hashes --no-deps --only-binary=:all: -r requirements/runtime.lock

# The package itself, without dependencies (they are all in the lock above), then bytecode for
# everything in the venv: the root filesystem is read-only at run time, so nothing is compiled
# there. unchecked-hash .pyc files are used as they are, whatever the files' mtimes.
COPY pyproject.toml README.md openapi.yaml ./
COPY service ./service
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps /tmp/wheels/sigverify-*.whl \
    && /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv/lib \
    && /opt/venv/bin/sigverify --help > /dev/null

# ---- runtime: the venv and nothing else -----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="sigverify" \
      org.opencontainers.image.description="Verifies Sigstore/cosign signatures of container images and signs its verdicts" \
      org.opencontainers.image.licenses="Apache-2.0"

# SIGVERIFY_DATA_DIR and /tmp are the only writable paths; mount volumes there (the Helm chart
# uses emptyDirs). HOME=/tmp gives libraries that cache under ~ (sigstore's TUF client) a
# writable place. gunicorn's worker heartbeat files go to TMPDIR.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    SIGVERIFY_BIND=0.0.0.0:8080 \
    SIGVERIFY_DATA_DIR=/var/lib/sigverify

COPY --from=builder /opt/venv /opt/venv

# Created owned by the runtime user so that a plain `docker run` (no volume) still works.
RUN install -d -m 0700 -o 10001 -g 10001 /var/lib/sigverify

USER 10001:10001
WORKDIR /tmp
VOLUME ["/var/lib/sigverify", "/tmp"]
EXPOSE 8080

# `sigverify serve` loads the trust root and signing key and checks every setting before it execs
# gunicorn, so a bad configuration stops the container with the setting named.
ENTRYPOINT ["/opt/venv/bin/sigverify"]
CMD ["serve"]
