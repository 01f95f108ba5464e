# An exporter's own image plus one static binary, BusyBox, for its healthcheck only.
# Docker runs a healthcheck inside the container, and the official exporter images
# have no HTTP client to run: nginx-prometheus-exporter and redis_exporter are FROM
# scratch (the binary, CA certificates, nothing else), postgres_exporter's BusyBox base
# is not guaranteed either. A static BusyBox needs no libc, so it runs in all of them.
# Build context: infra/monitoring. docker-compose.monitoring.yml passes both images.
ARG NODE_IMAGE=node:24-trixie-slim
# The exporter's image, e.g. nginx/nginx-prometheus-exporter:1.5.1 (no default: one
# Dockerfile serves the three exporters).
ARG EXPORTER_IMAGE

# Debian's busybox-static, from the Node image (Debian-based, with apt): no other image needed.
FROM ${NODE_IMAGE} AS probe
RUN apt-get update \
    && apt-get install -y --no-install-recommends busybox-static \
    && rm -rf /var/lib/apt/lists/*

FROM ${EXPORTER_IMAGE}
# Root-owned and not writable by the exporter's user; the entrypoint, user and ports
# stay the exporter image's own.
COPY --from=probe /bin/busybox /usr/local/bin/busybox
