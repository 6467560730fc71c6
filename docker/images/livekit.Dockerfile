# livekit-server built on the host by `go install` (cgo, so it links glibc: Debian base, not scratch).
# Configured like the official image: --config FILE, or the YAML body in LIVEKIT_CONFIG, plus env
# overrides (LIVEKIT_KEYS, REDIS_HOST, REDIS_PASSWORD, NODE_IP, LIVEKIT_RTC_TCP_PORT, ...).
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
# HTTP/WebSocket and ICE/TCP defaults; ICE/UDP ports depend on rtc.port_range_* or rtc.udp_port.
EXPOSE 7880 7881
ENTRYPOINT ["/usr/local/bin/livekit-server"]
# Last, so that a new binary rebuilds one layer only.
COPY server /usr/local/bin/livekit-server
