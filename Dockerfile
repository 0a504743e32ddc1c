FROM python:3.12-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl && rm -rf /var/lib/apt/lists/*
# The hashed lock first (its layer is cached until the lock changes), then the project without deps.
COPY requirements/run.lock requirements/run.lock
RUN pip install --no-cache-dir --require-hashes -r requirements/run.lock
COPY pyproject.toml README.md ./
COPY server server
COPY collab collab
COPY realtime realtime
COPY wire wire
COPY migrations migrations
COPY alembic.ini ./
COPY web/dist web/dist
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
EXPOSE 8000
# 0.0.0.0 so a proxy on the container network can reach it. Sign-in comes from the environment:
# Clerk (CLERK_JWKS_URL or CLERK_JWT_KEY); dev sign-in on this address is refused unless
# ALLOW_DEV_AUTH_ON_NETWORK=1 (deploy/compose.dev.yml, behind a loopback-published proxy).
# Metrics are off unless METRICS is set (compose: METRICS=0.0.0.0:9464, never published).
CMD ["python", "-m", "server", "serve", "--host", "0.0.0.0", "--port", "8000"]
