# Redis from Debian's package, on the local debootstrap base (no registry needed).
# Like the official redis image: runs as user redis, data in /data, plain `redis-server` by default;
# the compose files pass the real settings on the command line.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
