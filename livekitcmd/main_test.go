package livekitcmd

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// TestMain runs Caddy's own main instead of the tests when asked to, so
// that a test can see `caddy livekit ...` as an operator does: its output
// and exit status.
func TestMain(m *testing.M) {
	if os.Getenv("LIVEKITCMD_TEST_CADDY") == "1" {
		caddycmd.Main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// caddy runs this test binary as `caddy ARGS` and returns its output and
// exit status.
func caddy(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LIVEKITCMD_TEST_CADDY=1", "LIVEKIT_REDIS_ADDRESS=")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("caddy %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// A typo must not pass for success: an unknown verb, or none, exits 1.
func TestExitStatus(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"livekit", "stauts"}, 1, `unknown command "stauts"`},
		{[]string{"livekit"}, 1, "a command is required"},
		{[]string{"livekit", "deployment"}, 1, "deployment needs a command"},
		{[]string{"livekit", "status"}, 1, "no Redis"},
		{[]string{"livekit", "--help"}, 0, "deployment record MACHINE DIGEST"},
	} {
		out, code := caddy(t, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("caddy %s: exit %d, want %d, and output with %q:\n%s", strings.Join(c.args, " "), code, c.code, c.want, out)
		}
	}
}

// verify exits 1 on a problem and 0 without, as deploy.sh reads it.
func TestExitStatusVerify(t *testing.T) {
	t.Setenv("NODES", "")
	r := startRedis(t)
	r.register(t, lkNode("ND_a", "10.9.0.1", serving, 0))
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": liveNode(t)})
	if out, code := caddy(t, "livekit", "verify", "--config", cfg, "--nodes", "10.9.0.1"); code != 0 {
		t.Errorf("verify of a healthy cluster: exit %d\n%s", code, out)
	}
	if out, code := caddy(t, "livekit", "verify", "--config", cfg, "--nodes", "10.9.0.1,10.9.0.2"); code != 1 || !strings.Contains(out, "PROBLEM: node 10.9.0.2 from NODES is not registered in Redis") {
		t.Errorf("verify with a node missing: exit %d\n%s", code, out)
	}
}
