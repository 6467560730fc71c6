package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/livekit-lb/caddy-livekit/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden JSON in docker/testdata")

// turnEnv is what deploy.sh gives the Caddy of the second of three machines with TURN=on: its own
// functions (docker/deploy/env.sh) compute it, so the rule that names each node's TURN name and
// route lives in one place.
func turnEnv(t *testing.T, tls, certs string) map[string]string {
	t.Helper()
	v := golden.DeployEnv(t, filepath.Join("..", ".."), []string{"NODES=10.0.0.11,10.0.0.12,10.0.0.13", "THIS_NODE=10.0.0.12",
		"DOMAIN=livekit.example.com", "TLS=" + tls, "TURN=on", "TURN_CERTS=" + certs,
		"TLS_CERT_FILE=/dev/null", "TLS_KEY_FILE=/dev/null"}, "CADDY_SITE", "TURN_ROUTES", "TURN_CERT_NAMES", "TURN_DOMAIN")
	v["DOMAIN"] = v["CADDY_SITE"]
	delete(v, "CADDY_SITE")
	return v
}

// docker/Caddyfile with TURN=on adapts, in every TLS mode, to the JSON in docker/testdata: one
// :443 listener whose layer4 wrapper sends each node's TURN name, TLS terminated, to that node's
// TURN port and everything else on to the tls wrapper and the HTTP app; the TURN names are sites
// only so that their certificates are managed. (TURN=off is the root module's
// TestDockerCaddyfileTLSModes: the same file, without caddy-l4.)
func TestDockerCaddyfileTURN(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "docker", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ tls, certs, golden string }{
		{"internal", "all", "Caddyfile.turn-internal.json"},
		{"files", "all", "Caddyfile.turn-files.json"},
		{"auto", "own", "Caddyfile.turn-auto-own.json"},
	} {
		t.Run(c.tls+"-"+c.certs, func(t *testing.T) {
			env := turnEnv(t, c.tls, c.certs)
			wantDomain := "turn-2.livekit.example.com"
			if env["TURN_DOMAIN"] != wantDomain {
				t.Errorf("this node's TURN name %q, want %q", env["TURN_DOMAIN"], wantDomain)
			}
			for k, v := range env {
				t.Setenv(k, v)
			}
			t.Setenv("TLS", c.tls)
			t.Setenv("TURN", "on")
			for _, v := range []string{"REDIS_HOST", "REDIS_PORT", "LOAD_MEASURE"} {
				t.Setenv(v, "")
				os.Unsetenv(v)
			}
			out, warns, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
			for _, w := range warns {
				t.Logf("warning: %s", w.String())
			}
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			checkGolden(t, out, filepath.Join("..", "..", "docker", "testdata", c.golden))
		})
	}
}

// checkGolden compares adapted JSON with the golden file (rewritten with -update).
func checkGolden(t *testing.T, out []byte, path string) { golden.Check(t, out, path, *update) }
