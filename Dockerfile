# The workbench image: sweep workers, and the MLflow server / optuna-dashboard services of docker-compose.yml.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
# chromium: kaleido's PNG export of the figures (without it the runs keep HTML figures only).
RUN apt-get update && apt-get install -y --no-install-recommends chromium \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workbench ./workbench
RUN pip install ".[server]"
COPY experiments ./experiments
RUN useradd --create-home workbench && mkdir -p /app/mlruns /mlartifacts \
    && chown workbench /app/mlruns /app/experiments /mlartifacts
USER workbench
CMD ["python", "-m", "workbench.sweep", "--trials", "40", "--worker-index", "auto"]
