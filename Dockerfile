# syntax=docker/dockerfile:1
#
# neurolocal on Ray: one image for the Ray head, the Ray workers and the driver.
#
#   docker build -t neurolocal:0.1.0 .
#   docker run --rm neurolocal:0.1.0 validate /opt/neurolocal/topologies/mlp.yaml
#
# Head and worker nodes run `ray start` inside (override the entrypoint; `--init` gives
# the container a real PID 1 that reaps the processes Ray leaves behind):
#
#   docker run -d --init --network host --shm-size 2g --name ray-head \
#     -v "$HOME/.ray/auth_token:/run/secrets/ray_auth_token:ro" \
#     --entrypoint ray neurolocal:0.1.0 start --head --block --port 6379 --include-dashboard=false
#   docker run -d --init --network host --shm-size 2g --name ray-worker \
#     -v "$HOME/.ray/auth_token:/run/secrets/ray_auth_token:ro" \
#     --entrypoint ray neurolocal:0.1.0 start --block --address HEAD_IP:6379
#
# The token file is mounted read-only (never baked into the image, never in `docker
# inspect` as an environment variable); RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH below
# make Ray read it. See docs/scaling.md.
#
# tests/test_dockerfile.py checks this file's rules (docker build cannot run in CI).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the project's wheel, nothing else ----------------------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml ./
COPY neurolocal ./neurolocal
RUN pip install --no-cache-dir "setuptools>=68" \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# the driver and every node must run the same Ray; keep it in step with the lock you test with
ARG RAY_VERSION=2.60.0

LABEL org.opencontainers.image.title="neurolocal" \
      org.opencontainers.image.description="Predictive coding on arbitrary computation graphs, every vertex a Ray actor" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_AUTH_MODE=token \
    RAY_AUTH_TOKEN_PATH=/run/secrets/ray_auth_token \
    NUMBA_CACHE_DIR=/home/neurolocal/.cache/numba

COPY --from=build /wheels /tmp/wheels
# runtime dependencies only: the wheel's own (numpy, numba, ray, msgpack, pyyaml), no [test]
RUN pip install --no-cache-dir "ray==${RAY_VERSION}" /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin neurolocal

COPY --chown=neurolocal:neurolocal topologies /opt/neurolocal/topologies

USER neurolocal
WORKDIR /home/neurolocal

# compile the numba kernels into NUMBA_CACHE_DIR once, at build time, so every node
# started from this image begins with a warm cache (a cold compile costs 2-3 s per process)
RUN neurolocal check-grad /opt/neurolocal/topologies/mlp.yaml --max-rel-error 1e-10 \
    && neurolocal check-grad /opt/neurolocal/topologies/cnn.yaml --max-rel-error 1e-10

# Ray: GCS, Ray Client (documentation only: publish them or use --network host)
EXPOSE 6379 10001

ENTRYPOINT ["neurolocal"]
CMD ["--help"]
