# Our Caddy (static, CGO_ENABLED=0) built on the host. The Debian base only adds CA certificates
# and a shell for debugging. Layout as in the official caddy image: /etc/caddy, /data, /config.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
RUN mkdir -p /etc/caddy /config/caddy /data/caddy /srv
WORKDIR /srv
EXPOSE 80 443 2019
ENTRYPOINT ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
# Last: a code change rebuilds this layer only (the steps above come from the build cache).
COPY caddy /usr/bin/caddy
