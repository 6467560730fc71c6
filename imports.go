// Package caddylivekit registers every module of this repository, so that
// `xcaddy build --with github.com/livekit-lb/caddy-livekit` gets them all.
package caddylivekit

import (
	// LiveKit-aware load balancing: http.handlers.livekit_lb,
	// http.reverse_proxy.upstreams.livekit, admin.api.livekit
	_ "github.com/livekit-lb/caddy-livekit/livekitlb"
	// create-room endpoint: http.handlers.livekit_token
	_ "github.com/livekit-lb/caddy-livekit/tokenhandler"
	// `caddy livekit status|rooms|drain|undrain|verify`
	_ "github.com/livekit-lb/caddy-livekit/livekitcmd"
)
