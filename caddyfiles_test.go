package caddylivekit

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
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

// docker/Caddyfile for the machine of a two-region deployment with capacity limits and a GeoIP
// database: deploy.sh's own functions (docker/deploy/env.sh) turn .env's NODE_REGIONS, REGIONS,
// GEOIP_DB and limits into the proxy's environment, and both handlers get the regions, this
// proxy's region, geoip_db and the limits (golden JSON in docker/testdata/Caddyfile.regions.json).
func TestDockerCaddyfileRegions(t *testing.T) {
	script := `root=$PWD; log() { :; }; die() { echo "$*" >&2; exit 1; }
. docker/deploy/env.sh
parse_addresses
host_env
limits_env
printf '%s\0' "$LB_REGION_MODE" "$LB_REGION" "$LB_REGIONS" "$LIVEKIT_REGION" "$SYSLOAD_LIMIT" "$MAX_ROOMS" "$MAX_CLIENTS" "$LB_GEOIP"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "NODES=10.0.0.11,10.0.0.12,10.1.0.11,10.1.0.12", "THIS_NODE=10.1.0.11",
		"NODE_REGIONS=shanghai,shanghai,frankfurt,frankfurt", "REGIONS=shanghai 31.23 121.47, frankfurt 50.11 8.68",
		"SYSLOAD_LIMIT=0.9", "MAX_ROOMS=200", "DOMAIN=livekit.example.com", "TLS=internal", "GEOIP_DB=livekitlb/testdata/geo-test.mmdb"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker/deploy/env.sh: %v: %s", err, stderr.Bytes())
	}
	v := strings.Split(string(out), "\x00")
	if len(v) != 9 {
		t.Fatalf("docker/deploy/env.sh printed %q", out)
	}
	if v[1] != "frankfurt" || v[3] != "frankfurt" {
		t.Errorf("the proxy's region %q, its node's %q: want frankfurt, the region of THIS_NODE in NODE_REGIONS", v[1], v[3])
	}
	for i, k := range []string{"LB_REGION_MODE", "LB_REGION", "LB_REGIONS", "", "SYSLOAD_LIMIT", "MAX_ROOMS", "MAX_CLIENTS", "LB_GEOIP"} {
		if k != "" {
			t.Setenv(k, v[i])
		}
	}
	t.Setenv("TLS", "internal")
	t.Setenv("DOMAIN", "livekit.example.com")
	for _, k := range []string{"REDIS_HOST", "REDIS_PORT", "LOAD_MEASURE", "TURN"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	src, err := os.ReadFile("docker/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	adapted, err := adapt(t, string(src))
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	checkGolden(t, adapted, filepath.Join("docker", "testdata", "Caddyfile.regions.json"))
}
