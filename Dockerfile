# ghst panel image: `ghst serve` on port 2222, data (secrets, host key) in the /data volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GHST_SSH_HOST=0.0.0.0 \
    GHST_SSH_PORT=2222 \
    GHST_DATA_DIR=/data

RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin ghst \
    && mkdir -p /data/nginx/vhosts \
    && chown -R ghst:ghst /data \
    && chmod 700 /data

WORKDIR /app
COPY . .
# core/migrations.py reads the SQL files from migrations/ beside the packages, which a plain
# `pip install .` would leave behind; installing in place keeps them next to the code.
RUN pip install -e . && python -m compileall -q core sshd tui

USER ghst
EXPOSE 2222
VOLUME ["/data"]
CMD ["sh", "-c", "ghst migrate && exec ghst serve"]
