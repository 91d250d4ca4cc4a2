# The explanation service: one image for the API (`rps serve`) and the workers (`rps worker`).
#
# CPU (default):   docker build -t rps .
# CUDA:            docker build -t rps-gpu \
#                    --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                    --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# A non-Python base image gets Python from its package manager (see the first RUN).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Where torch comes from; torch is pinned, so pip never swaps in another build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    RPS_DATA_DIR=/data

# CUDA base images ship without Python; python:3.11-slim already has it.
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv

# torch first, from the chosen index, so installing the project keeps this build.
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

WORKDIR /srv/rps
COPY client ./client
RUN pip install ./client
COPY pyproject.toml README.md ./
COPY representer ./representer
COPY models_store ./models_store
COPY workers ./workers
COPY app ./app
COPY rps_server ./rps_server
RUN pip install . && python -c "import torch, representer, app, workers, models_store, rps_server.commands, rps.cli"

# Run as an unprivileged user; artifacts (and the SQLite file in embedded mode) live in /data.
RUN useradd --create-home --uid 10001 --user-group rps \
    && mkdir -p /data && chown rps:rps /data
USER rps
VOLUME ["/data"]
EXPOSE 8000

# Health checks are per service in docker-compose.yml (the API answers /healthz, workers do not).
ENTRYPOINT ["rps"]
# The API; workers run the same image with `worker --queues default` (see docker-compose.yml).
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
