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
			checkGolden(t, out, strings.TrimSuffix(f, ".caddyfile")+".json")
		})
	}
}

// checkGolden compares adapted JSON with the golden file (rewritten with -update).
func checkGolden(t *testing.T, out []byte, golden string) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
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
		t.Fatalf("adapts to\n%s\nwant (%s)\n%s", pretty.String(), golden, want)
	}
}

// docker/Caddyfile, the stacks' proxy, adapts for every TLS mode deploy.sh can
// set (golden JSON in docker/testdata/, one per mode).
func TestDockerCaddyfileTLSModes(t *testing.T) {
	src, err := os.ReadFile("docker/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"off", "auto", "internal", "files"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("TLS", mode)
			t.Setenv("DOMAIN", "livekit.example.com")
			if mode == "off" {
				t.Setenv("DOMAIN", ":8080")
			}
			for _, v := range []string{"REDIS_HOST", "REDIS_PORT", "LOAD_MEASURE"} {
				t.Setenv(v, "")
				os.Unsetenv(v)
			}
			out, err := adapt(t, string(src))
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			checkGolden(t, out, filepath.Join("docker", "testdata", "Caddyfile.tls-"+mode+".json"))
		})
	}
}
