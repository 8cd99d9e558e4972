# syntax=docker/dockerfile:1

# The borobridge image: a virtual environment built in the first stage, copied alone into a slim runtime.
# Both stages use the same base image, so the environment's interpreter path exists in the runtime.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# The dependencies, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > requirements.txt \
    && pip install --no-cache-dir --requirement requirements.txt

# The package itself; its dependencies are already installed.
COPY README.md ./
COPY borobridge ./borobridge
RUN pip install --no-cache-dir --no-deps .


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="borobridge" \
      org.opencontainers.image.description="Elecard Boro alarms as CloudEvents on Apache Kafka and MQTT" \
      org.opencontainers.image.licenses="Apache-2.0"

# The health listener serves /livez, /readyz and /metrics on every interface of the container: its default,
# 127.0.0.1, would hide them from probes and scrapers outside it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOROBRIDGE_HEALTH__HOST=0.0.0.0

RUN groupadd --system --gid 10001 borobridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin borobridge

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["borobridge"]
CMD ["run", "--config", "/etc/borobridge/config.yaml"]
