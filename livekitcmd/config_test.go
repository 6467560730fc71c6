package livekitcmd

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// flagsOf returns the verify command of a fresh `caddy livekit` with args
// parsed, for clusterFrom.
func flagsOf(t *testing.T, args ...string) *cobra.Command {
	t.Helper()
	root := &cobra.Command{Use: "livekit"}
	setup(root)
	cmd, rest, err := root.Find(append([]string{"verify"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// clusterFrom reads the first livekit_lb or livekit_token of --config, or
// --redis (or $LIVEKIT_REDIS_ADDRESS) with the password from
// $REDIS_PASSWORD; --allow-networks overrides.
func TestClusterFrom(t *testing.T) {
	t.Setenv("LIVEKIT_REDIS_ADDRESS", "")
	t.Setenv("REDIS_PASSWORD", "pw-from-env")
	r := &testRedis{addr: "127.0.0.1:6390"}
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": "127.0.0.1:7001"}, "allow_networks 10.9.0.0/24")

	c, err := clusterFrom(flagsOf(t, "--config", cfg))
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := c.Config()
	if err != nil {
		t.Fatal(err)
	}
	if resolved.Redis.Address != r.addr || !reflect.DeepEqual(resolved.NodeAddresses, map[string]string{"10.9.0.1": "127.0.0.1:7001"}) ||
		!reflect.DeepEqual(resolved.AllowNetworks, []string{"10.9.0.0/24"}) {
		t.Errorf("--config: %+v", resolved)
	}

	c, err = clusterFrom(flagsOf(t, "--config", cfg, "--redis", "127.0.0.1:6391", "--allow-networks", "127.0.0.1/32,10.0.0.0/8"))
	if err != nil {
		t.Fatal(err)
	}
	if resolved, _ = c.Config(); resolved.Redis.Address != "127.0.0.1:6391" || resolved.Redis.Password != "pw-from-env" ||
		!reflect.DeepEqual(resolved.AllowNetworks, []string{"127.0.0.1/32", "10.0.0.0/8"}) {
		t.Errorf("--redis and --allow-networks over --config: %+v", resolved.Redis)
	}

	t.Setenv("LIVEKIT_REDIS_ADDRESS", "127.0.0.1:6392")
	if c, err = clusterFrom(flagsOf(t)); err != nil || c.Redis.Address != "127.0.0.1:6392" {
		t.Errorf("$LIVEKIT_REDIS_ADDRESS: %+v %v", c.Redis, err)
	}
	t.Setenv("LIVEKIT_REDIS_ADDRESS", "")
	if _, err := clusterFrom(flagsOf(t)); err == nil || !strings.Contains(err.Error(), "no Redis") {
		t.Errorf("no Redis named: %v", err)
	}

	other := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(other, []byte(":8089 {\n\trespond ok\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := clusterFrom(flagsOf(t, "--config", other)); err == nil || !strings.Contains(err.Error(), "has no livekit_lb or livekit_token") {
		t.Errorf("a Caddyfile without our handlers: %v", err)
	}
	if _, err := clusterFrom(flagsOf(t, "--config", filepath.Join(t.TempDir(), "missing"))); err == nil {
		t.Errorf("a missing --config: no error")
	}
}

// The Redis password comes from the Caddyfile's {env.*} placeholder, or
// from $REDIS_PASSWORD with --redis: the commands reach a Redis that has one.
func TestRedisPassword(t *testing.T) {
	r := startRedis(t, "--requirepass", "s3cret-pw")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	caddyfile := ":8088 {\n\tlivekit_lb {\n\t\tredis {\n\t\t\taddress " + r.addr + "\n\t\t\tpassword {env.REDIS_PASSWORD}\n\t\t}\n" +
		"\t\tapi_key APItest\n\t\tapi_secret 0123456789abcdef0123456789abcdef\n\t}\n}\n"
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REDIS_PASSWORD", "s3cret-pw")
	mustCLI(t, "deployment", "list", "--config", cfg)
	mustCLI(t, "deployment", "list", "--redis", r.addr)
	t.Setenv("REDIS_PASSWORD", "wrong")
	if _, err := cli(t, "status", "--config", cfg); err == nil {
		t.Errorf("status with a wrong password: no error")
	}
}
