# syntax=docker/dockerfile:1
# Session tools and deployment helpers: writes the broker files (mosquitto-init) and runs `ccsbus sim`.
# Same two stages as every service image: the wheels (with the EXI codec's C extension) are built
# with a compiler, the runtime image gets only the wheels.
FROM python:3.11-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md* ./
COPY lib lib
COPY services services
COPY tools tools
COPY config config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CCSBUS_CONFIG=/opt/ccsbus/config/ccsbus.yaml \
    CCSBUS_CONTRACT=/opt/ccsbus/config/topics.yaml \
    MPLBACKEND=Agg
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap0.8 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/ccsbus-*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /opt/ccsbus ccsbus \
    && mkdir -p /runs && chown ccsbus /runs
WORKDIR /opt/ccsbus
COPY config config

USER 10001
ENTRYPOINT ["python", "-m", "ccsbus"]
CMD ["sim", "--out", "/runs/latest"]
