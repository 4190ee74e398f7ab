# facepipe image: the CLI with every backend installed (CPU only).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml requirements-nodeps.txt README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY training ./training
COPY config ./config
RUN pip install --no-cache-dir -e ".[postgres]" \
 && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt
ENV FACEPIPE_HOME=/data
ENTRYPOINT ["facepipe"]
