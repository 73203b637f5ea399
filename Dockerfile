# ghst panel image: `ghst serve` on port 2222 (data: secrets, host key, builds in /data), and
# `ghst nginx` for the nginx service of docker-compose.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GHST_SSH_HOST=0.0.0.0 \
    GHST_SSH_PORT=2222 \
    GHST_DATA_DIR=/data

# nginx (routing to the apps), compose (for apps that ship a compose file) and iptables (the
# firewall around the apps' networks). The panel runs as root: it holds the Docker socket, which
# is root on the host anyway, and it signals nginx.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light docker-compose iptables \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data /nginx \
    && chmod 700 /data

WORKDIR /app
COPY . .
# core/db/migrations.py reads the SQL files from migrations/ beside the packages, which a plain
# `pip install .` would leave behind; installing in place keeps them next to the code.
RUN pip install -e . && python -m compileall -q cli commands core sshd tui

EXPOSE 2222
VOLUME ["/data"]
CMD ["sh", "-c", "ghst migrate && exec ghst serve"]
