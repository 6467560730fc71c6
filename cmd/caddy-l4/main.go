// Command caddy-l4 is the deployment's Caddy: Caddy's standard distribution,
// this repository's LiveKit modules and mholt/caddy-l4, whose layer-4 listener
// wrapper splits port 443 by the TLS ClientHello's server name (each LiveKit
// node's TURN name to that node's TURN port, everything else to the HTTP app;
// docker/Caddyfile). A module of its own, so that caddy-l4 and what it brings
// (quic-go, miekg/dns, ...) stay out of the plugin's go.mod:
//
//	cd cmd/caddy-l4 && go build -o caddy .
//
// The same binary with xcaddy, from a checkout of this repository:
//
//	xcaddy build v2.11.9 --with github.com/livekit-lb/caddy-livekit@v0.0.0=. --with github.com/mholt/caddy-l4@v0.1.2
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/livekit-lb/caddy-livekit"
	_ "github.com/mholt/caddy-l4"
)

func main() {
	caddycmd.Main()
}
