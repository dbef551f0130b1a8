# One image for every Vigil service (ingest, worker, scorer, evidence, notify, api); the command picks it.
#   docker build -t vigil .                                                          # CPU: TensorFlow backend
#   docker build --build-arg EXTRAS=gpu --build-arg KERAS_BACKEND=jax -t vigil:gpu .  # GPU workers: JAX CUDA 12
# docker-compose.gpu.yml and the Helm chart (worker.gpu.enabled) use the GPU variant for workers only.
FROM python:3.11-slim-bookworm

ARG EXTRAS=""
ARG KERAS_BACKEND=tensorflow
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 KERAS_BACKEND=${KERAS_BACKEND}

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY vigil ./vigil
COPY shared ./shared
COPY model ./model
COPY services ./services
COPY tools ./tools
RUN pip install ".${EXTRAS:+[$EXTRAS]}"

RUN useradd --create-home --uid 10001 vigil && mkdir -p /var/lib/vigil && chown vigil /var/lib/vigil
USER vigil
ENV VIGIL_STATE_DIR=/var/lib/vigil
ENTRYPOINT ["vigil"]
CMD ["--help"]
