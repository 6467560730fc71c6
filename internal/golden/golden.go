// Package golden holds what the golden Caddyfile -> JSON tests of the root
// module and of cmd/caddy-l4 (a module of its own) share: the comparison
// with a golden file, and deploy.sh's own functions computing a machine's
// environment, so the rules of docker/deploy/env.sh live in one place.
package golden

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Check compares adapted JSON, indented, with the golden file; update
// rewrites the file first (go test -update).
func Check(t testing.TB, out []byte, golden string, update bool) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	if update {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run the test with -update)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Fatalf("adapts to\n%s\nwant (%s)\n%s", pretty.String(), golden, want)
	}
}

// DeployEnv runs docker/deploy/env.sh's parse_addresses, host_env and
// limits_env in the checkout root with only env (KEY=VALUE) besides PATH,
// and returns the values of names as deploy.sh would give them to compose.
func DeployEnv(t testing.TB, root string, env []string, names ...string) map[string]string {
	t.Helper()
	script := `root=$PWD; log() { :; }; die() { echo "$*" >&2; exit 1; }
. docker/deploy/env.sh
parse_addresses
host_env
limits_env
for v in "$@"; do printf '%s\0' "${!v}"; done`
	cmd := exec.Command("bash", append([]string{"-c", script, "env.sh"}, names...)...)
	cmd.Dir = root
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker/deploy/env.sh: %v: %s", err, stderr.Bytes())
	}
	v := strings.Split(string(out), "\x00")
	if len(v) != len(names)+1 {
		t.Fatalf("docker/deploy/env.sh printed %q for %q", out, names)
	}
	values := map[string]string{}
	for i, name := range names {
		values[name] = v[i]
	}
	return values
}
