# syncd as a container: `docker compose up` runs it next to MongoDB (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them; with the
# `fast` extras (uvloop, httptools), which `syncd run` picks up when installed.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['fast']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md ./
COPY syncd/ syncd/
COPY mappings/ mappings/
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --create-home --home-dir /home/syncd --shell /usr/sbin/nologin syncd

# The installed code and mappings stay owned by root: the service cannot rewrite itself.
ENV SYNCD_MAPPINGS_DIR=/app/mappings \
    SYNCD_HTTP_HOST=0.0.0.0 \
    SYNCD_HTTP_PORT=8080 \
    SYNCD_LOG_FORMAT=json

# Numeric, so Kubernetes can check runAsNonRoot.
USER 10001
EXPOSE 8080

# python:3.11-slim has no curl; urllib raises (non-zero exit) on a refused connection or non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

CMD ["syncd", "run"]
