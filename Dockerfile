# One image for every Vigil service (ingest, worker, scorer); the command picks the service.
#   docker build -t vigil .                          # CPU (tensorflow-cpu)
#   docker build --build-arg EXTRAS=gpu -t vigil:gpu .   # + JAX CUDA for GPU workers (KERAS_BACKEND=jax)
FROM python:3.11-slim-bookworm

ARG EXTRAS=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

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
