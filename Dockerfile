# MLQ worker + HTTP server. With no Redis named it runs its own embedded one
# (AOF under /home/mlq/.local/share/mlq); to use another, set
#   ENV MLQ_REDIS_URL=redis://redis:6379/0
# The server binds 0.0.0.0 here, so it needs MLQ_TOKEN (docker run -e MLQ_TOKEN=...).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip install . && useradd --create-home mlq \
    && mkdir -p /home/mlq/.local/share/mlq && chown -R mlq:mlq /home/mlq/.local

USER mlq
WORKDIR /home/mlq
VOLUME /home/mlq/.local/share/mlq
STOPSIGNAL SIGTERM
EXPOSE 5000
HEALTHCHECK CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=2)" || exit 1
CMD ["controller", "consumer", "--server", "--server_address", "0.0.0.0"]
