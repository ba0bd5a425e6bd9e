# syntax=docker/dockerfile:1
# The consul-grpc agent image: `docker build -t consul-grpc .`
#   docker run --rm -p 8500:8500 -p 8502:8502 consul-grpc \
#     agent --dev --http-addr 0.0.0.0:8500 --grpc-addr 0.0.0.0:8502
# The Compose demo (compose.yaml) runs every agent and the example programs
# (examples/python) from this one image.

# Build stage: the project's wheel and every dependency's wheel.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY generated ./generated
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Run stage: install from the wheels only, run as a non-root user.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/consul_grpc-*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 consul \
    && useradd --system --uid 10001 --gid consul --home-dir /consul --create-home consul \
    && mkdir -p /consul/data \
    && chown -R consul:consul /consul
WORKDIR /app
COPY docker/healthcheck.py ./docker/healthcheck.py
COPY examples/python ./examples/python
USER 10001:10001
VOLUME ["/consul/data"]
# 8300 server RPC and membership, 8500 HTTP API, 8502 gRPC API.
EXPOSE 8300 8500 8502
# gRPC health (grpc.health.v1) of the agent's --grpc-addr, 127.0.0.1:8502 by default.
HEALTHCHECK --interval=5s --timeout=4s --start-period=15s --retries=5 \
    CMD ["python", "/app/docker/healthcheck.py"]
ENTRYPOINT ["consul-grpc"]
CMD ["agent", "--dev", "--data-dir", "/consul/data", "--http-addr", "0.0.0.0:8500", "--grpc-addr", "0.0.0.0:8502"]
