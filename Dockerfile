FROM python:3.12-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY server server
COPY collab collab
COPY realtime realtime
COPY migrations migrations
COPY alembic.ini ./
COPY web/dist web/dist
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["python", "-m", "server", "serve", "--host", "0.0.0.0", "--port", "8000"]
