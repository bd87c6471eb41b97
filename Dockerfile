# Image of the credit monitor worker, used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package needs (see .dockerignore); tests and deploy stay out.
COPY pyproject.toml ./
COPY monitor ./monitor
COPY schemas ./schemas
COPY streams ./streams
RUN pip install . && useradd --system --uid 10001 monitor

USER monitor
EXPOSE 8080
CMD ["credit-monitor", "worker"]
