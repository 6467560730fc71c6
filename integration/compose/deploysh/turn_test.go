package deploysh

import (
	"strings"
	"testing"
)

// TURN=on on a Caddy image without caddy-l4 (a CADDY_BIN built from cmd/caddy, an xcaddy build of
// the plugin alone) stops deploy with what to build, before any container is touched: that Caddy
// would restart forever on the layer4 listener wrapper. With caddy-l4 it goes on to compose.
func TestTURNNeedsLayer4(t *testing.T) {
	env := secrets + "NODES=10.0.0.11,10.0.0.12\nTHIS_NODE=10.0.0.11\nTLS=internal\nDOMAIN=livekit.test\nTURN=on\n"
	r := deploySh(t, env, []string{"FAKE_NO_LAYER4=1"}, "deploy")
	want := "error: TURN=on needs a Caddy with mholt/caddy-l4 (the layer4 module), and caddy-livekit:local has none"
	if r.code == 0 || !strings.Contains(r.out, want) || r.called("docker-compose") {
		t.Errorf("no layer4: exit %d, calls %q, want an error %q and no compose call:\n%s", r.code, r.calls, want, r.out)
	}
	r = deploySh(t, env, nil, "deploy")
	if strings.Contains(r.out, "layer4") || !r.called("docker-compose") || r.compose["TURN_DOMAIN"] != "turn-1.livekit.test" {
		t.Errorf("with layer4: calls %q, TURN_DOMAIN %q:\n%s", r.calls, r.compose["TURN_DOMAIN"], r.out)
	}
	// TURN=off never asks
	r = deploySh(t, strings.Replace(env, "TURN=on", "TURN=off", 1), []string{"FAKE_NO_LAYER4=1"}, "deploy")
	if r.called("docker run") {
		t.Errorf("TURN=off: calls %q", r.calls)
	}
}
