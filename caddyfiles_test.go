package caddylivekit

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/livekit-lb/caddy-livekit/internal/golden"
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
func checkGolden(t *testing.T, out []byte, path string) { golden.Check(t, out, path, *update) }

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
	v := golden.DeployEnv(t, ".", []string{"NODES=10.0.0.11,10.0.0.12,10.1.0.11,10.1.0.12", "THIS_NODE=10.1.0.11",
		"NODE_REGIONS=shanghai,shanghai,frankfurt,frankfurt", "REGIONS=shanghai 31.23 121.47, frankfurt 50.11 8.68",
		"SYSLOAD_LIMIT=0.9", "MAX_ROOMS=200", "DOMAIN=livekit.example.com", "TLS=internal", "GEOIP_DB=livekitlb/testdata/geo-test.mmdb"},
		"LB_REGION_MODE", "LB_REGION", "LB_REGIONS", "LIVEKIT_REGION", "SYSLOAD_LIMIT", "MAX_ROOMS", "MAX_CLIENTS", "LB_GEOIP")
	if v["LB_REGION"] != "frankfurt" || v["LIVEKIT_REGION"] != "frankfurt" {
		t.Errorf("the proxy's region %q, its node's %q: want frankfurt, the region of THIS_NODE in NODE_REGIONS", v["LB_REGION"], v["LIVEKIT_REGION"])
	}
	for k, val := range v {
		if k != "LIVEKIT_REGION" {
			t.Setenv(k, val)
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
