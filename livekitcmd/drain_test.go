package livekitcmd

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Drain and undrain write the proxy's drain list (by id or IP), which
// status shows; a node no one registered is refused, unless it is being
// undrained and is on the list.
func TestDrain(t *testing.T) {
	r := startRedis(t)
	r.register(t, lkNode("ND_a", "10.9.0.1", serving, 0), lkNode("ND_b", "10.9.0.2", serving, 0))
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": liveNode(t), "10.9.0.2": liveNode(t)})
	drained := func() []string {
		t.Helper()
		keys, err := r.rc.HKeys(context.Background(), "caddy_livekit:drained").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}

	if out := mustCLI(t, "drain", "ND_a", "--config", cfg); !strings.Contains(out, "ND_a drained: takes no new rooms") {
		t.Errorf("drain ND_a said %q", out)
	}
	if got := drained(); !reflect.DeepEqual(got, []string{"ND_a"}) {
		t.Errorf("drain list after drain ND_a: %v", got)
	}
	if out := mustCLI(t, "status", "--config", cfg); !strings.Contains(out, "SERVING (drained)") {
		t.Errorf("status does not show ND_a drained:\n%s", out)
	}

	var answer map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, "drain", "10.9.0.2", "--config", cfg, "--json")), &answer); err != nil {
		t.Fatal(err)
	}
	if answer["node"] != "10.9.0.2" || answer["drained"] != true {
		t.Errorf("drain 10.9.0.2 --json: %v", answer)
	}

	mustCLI(t, "undrain", "ND_a", "--config", cfg)
	mustCLI(t, "undrain", "10.9.0.2", "--config", cfg)
	if got := drained(); len(got) != 0 {
		t.Errorf("drain list after undrain: %v", got)
	}

	t.Run("unknown node", func(t *testing.T) {
		for _, name := range []string{"ND_typo", "10.9.0.99", " "} {
			if _, err := cli(t, "drain", name, "--config", cfg); err == nil {
				t.Errorf("drain %q: no error", name)
			}
		}
		if _, err := cli(t, "undrain", "ND_typo", "--config", cfg); err == nil || !strings.Contains(err.Error(), "no LiveKit node") {
			t.Errorf("undrain of a node neither registered nor drained: %v", err)
		}
		if got := drained(); len(got) != 0 {
			t.Errorf("refused drains wrote %v", got)
		}
	})

	t.Run("undrain a node gone", func(t *testing.T) {
		if err := r.rc.HSet(context.Background(), "caddy_livekit:drained", "ND_gone", "2020-01-01T00:00:00Z").Err(); err != nil {
			t.Fatal(err)
		}
		mustCLI(t, "undrain", "ND_gone", "--config", cfg)
		if got := drained(); len(got) != 0 {
			t.Errorf("drain list after undrain ND_gone: %v", got)
		}
	})
}
