# syncd as a container: `docker compose up` runs it next to MongoDB (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them: the pinned
# versions of requirements.lock, every file checked against its hash, with the `fast` extras
# (uvloop, httptools) that `syncd run` picks up when installed. deploy/lock-requirements.sh
# regenerates the lock after a change to pyproject.toml.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY pyproject.toml ./

COPY README.md ./
COPY syncd/ syncd/
COPY mappings/ mappings/
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --create-home --home-dir /home/syncd --shell /usr/sbin/nologin syncd

# The installed code and mappings stay owned by root: the service cannot rewrite itself. The
# mappings are installed with the package (share/syncd/mappings); SYNCD_MAPPINGS_DIR is left for
# an operator's own manifests, since a folder holding the built-in ones again would define each
# platform twice and stop the start.
ENV SYNCD_HTTP_HOST=0.0.0.0 \
    SYNCD_HTTP_PORT=8080 \
    SYNCD_LOG_FORMAT=json

# Numeric, so Kubernetes can check runAsNonRoot.
USER 10001
EXPOSE 8080

# python:3.11-slim has no curl; urllib raises (non-zero exit) on a refused connection or non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

CMD ["syncd", "run"]
