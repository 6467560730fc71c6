// Command caddy is Caddy's standard distribution plus this repository's
// LiveKit modules: `go build ./cmd/caddy`.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/livekit-lb/caddy-livekit"
)

func main() {
	caddycmd.Main()
}
