# The console's image: what `opsconsole watch --export-manifests DIR` deploys (its default image name is
# opsconsole:VERSION; `--image` names another), usable for any headless `--action` as well.
#   docker build -t opsconsole:0.1.0 .
# Debian's tools, as on the operator's machine: Borg and OpenSSH (the Storage Box, the nodes, the database
# tunnel) and PostgreSQL's client.  It runs as the unprivileged user the manifests name (10001).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      borgbackup openssh-client postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/opsconsole
COPY . .
RUN pip install --no-cache-dir . && useradd --uid 10001 --home-dir /var/lib/opsconsole --no-create-home opsconsole
USER 10001
ENV XDG_STATE_HOME=/var/lib/opsconsole
ENTRYPOINT ["opsconsole"]
CMD ["watch", "--config", "/etc/opsconsole/config.toml"]
