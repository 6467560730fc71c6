package caddylivekit

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	out, warns, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	for _, w := range warns {
		t.Logf("warning: %s", w.String())
	}
	return out, err
}

var update = flag.Bool("update", false, "rewrite the golden JSON beside each Caddyfile")

// Every Caddyfile in caddyfiles/ adapts to the JSON stored beside it, which
// doubles as the JSON form of the same configuration for operators.
func TestCaddyfilesAdaptToGoldenJSON(t *testing.T) {
	for _, v := range []string{"DOMAIN", "REDIS_HOST", "REDIS_PORT"} {
		t.Setenv(v, "") // restored after the test
		os.Unsetenv(v)  // the golden files hold the defaults
	}
	files, _ := filepath.Glob("caddyfiles/*.caddyfile")
	if len(files) == 0 {
		t.Fatal("no Caddyfiles found in caddyfiles/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := adapt(t, string(src))
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := strings.TrimSuffix(f, ".caddyfile") + ".json"
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run: go test . -run Golden -update)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Fatalf("%s adapts to\n%s\nwant (%s)\n%s", f, pretty.String(), golden, want)
			}
		})
	}
}
