// Package deploysh tests what deploy.sh decides before Docker does anything: the env file read as
// data, NODES, THIS_NODE and REDIS_HOST checked, `down` with nothing running, `status` without
// Caddy's logs, the create-room command it prints. deploy.sh runs with a fake docker and
// docker-compose first in PATH, which record every call: no Docker is needed, so these tests run
// with the integration module's (scripts/test.sh), unlike ../ (scripts/test-compose.sh).
package deploysh

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDocker answers what deploy.sh asks docker: FAKE_SERVICES (the project's containers'
// services), FAKE_NETWORKS (its networks), FAKE_EXEC_FAIL (`docker exec` fails as Caddy does without
// Redis). `docker compose` is missing, so deploy.sh uses docker-compose.
const fakeDocker = `#!/bin/sh
printf 'docker %s\n' "$*" >>"$FAKE_LOG"
case "$*" in
"compose "*) exit 1 ;;
"ps -a "*) [ -z "$FAKE_SERVICES" ] || printf '%s\n' $FAKE_SERVICES ;;
"network ls "*) [ -z "$FAKE_NETWORKS" ] || printf '%s\n' $FAKE_NETWORKS ;;
"network inspect "*) exit 1 ;;
"exec "*)
	echo '{"level":"info","ts":1,"msg":"using config from file","file":"/etc/caddy/Caddyfile"}' >&2
	if [ -n "$FAKE_EXEC_FAIL" ]; then
		echo 'Error: redis 10.213.1.2:6379: connection refused' >&2
		exit 1
	fi
	echo 'NODE      ADDRESS      STATE    ROUTABLE'
	echo 'ND_x      10.213.1.11  SERVING  yes'
	;;
esac
exit 0
`

// fakeCompose records its calls; on `down`, also the environment deploy.sh gave it (FAKE_LOG.env).
const fakeCompose = `#!/bin/sh
printf 'docker-compose %s\n' "$*" >>"$FAKE_LOG"
case "$*" in
*" down"*) env >"$FAKE_LOG.env" ;;
*" ps -q "*) echo c0ffee ;;
*" ps") echo 'Name   State' ;;
esac
exit 0
`

type result struct {
	out     string
	code    int
	calls   []string          // docker and docker-compose command lines, in order
	compose map[string]string // the environment of `docker-compose down`, if it ran
}

// deploySh runs deploy.sh ARGS with env file content envFile, the fake Docker, and only the given
// variables besides PATH, HOME and ENV_FILE.
func deploySh(t *testing.T, envFile string, vars []string, args ...string) result {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"docker": fakeDocker, "docker-compose": fakeCompose} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := filepath.Join(dir, "my settings.env") // a path with a space, as a user's may be
	if err := os.WriteFile(env, []byte(envFile), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "calls")
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(t), "deploy.sh")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + dir, "ENV_FILE=" + env,
		"FAKE_LOG=" + log, "FAKE_SERVICES=", "FAKE_NETWORKS=", "FAKE_EXEC_FAIL=",
		"DEPLOY_WAIT=1"}, vars...) // a deploy that gets past the checks fails fast
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	r := result{}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("deploy.sh %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	r.out = out.String()
	if b, err := os.ReadFile(log); err == nil {
		r.calls = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	if b, err := os.ReadFile(log + ".env"); err == nil {
		r.compose = map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				r.compose[k] = v
			}
		}
	}
	return r
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(wd))) // integration/compose/deploysh -> repository
}

func (r result) called(prefix string) bool {
	for _, c := range r.calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

const secrets = "REDIS_PASSWORD=pw-0123456789\nLIVEKIT_API_KEY=APIabc\nLIVEKIT_API_SECRET=0123456789abcdef0123456789abcdef\n" +
	"CREATE_ROOM_KEY=crk-0123456789abcdef0123456789abcdef\nCOMPOSE_PROJECT_NAME=lkdsh\n"

// A bad address in NODES, THIS_NODE or REDIS_HOST stops every command with its name before any
// docker or compose call (on a running cluster, compose would stop a node before failing).
func TestBadAddressesStopBeforeDocker(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"NODES=10.213.1.11,10.213.1.12,10.213.1.300", "NODES: '10.213.1.300' is not an IPv4 address"},
		{"NODES=10.213.1.11,10.213.1.12,10.213.1.11", "NODES: 10.213.1.11 is listed twice"},
		{"NODES=10.213.1.11, 10.213.1", "NODES: '10.213.1' is not an IPv4 address"},
		{"NODES=10.213.1.011", "NODES: '10.213.1.011' is not an IPv4 address"},
		{"NODES=10.213.1.11,node2,10.213.1.13", "NODES: 'node2' is not an IPv4 address"},
		{"NODES=10.213.1.11.5", "NODES: '10.213.1.11.5' is not an IPv4 address"},
		{"NODES=10.0.0.11,10.0.0.12\nTHIS_NODE=10.0.0.256", "THIS_NODE: '10.0.0.256' is not an IPv4 address"},
		{"NODES=10.0.0.11,10.0.0.12\nREDIS_HOST=10.0.0", "REDIS_HOST: '10.0.0' is not an IPv4 address"},
	} {
		for _, cmd := range []string{"deploy", "status", "down", "verify"} {
			r := deploySh(t, secrets+c.env+"\n", nil, cmd)
			if r.code == 0 || !strings.Contains(r.out, "error: "+c.want) {
				t.Errorf("%q, deploy.sh %s: exit %d, want an error %q:\n%s", c.env, cmd, r.code, c.want, r.out)
			}
			if len(r.calls) > 0 {
				t.Errorf("%q, deploy.sh %s called Docker before failing: %q", c.env, cmd, r.calls)
			}
		}
	}
	// good addresses go on to Docker
	r := deploySh(t, secrets+"NODES=10.213.1.11,10.213.1.12,10.213.1.13\nREDIS_HOST=redis\n", nil, "down")
	if r.code != 0 || len(r.calls) == 0 {
		t.Errorf("NODES of three good addresses, deploy.sh down: exit %d, calls %q:\n%s", r.code, r.calls, r.out)
	}
}

// The env file is data, as docker compose reads it: `$` is never substituted, quotes are removed,
// comments and `export ` skipped; the caller's environment wins over the file.
func TestEnvFileReadAsData(t *testing.T) {
	file := `# a comment
export REDIS_PASSWORD=pa$word$1
LIVEKIT_API_KEY = 'API$key'   # single quotes: as written
LIVEKIT_API_SECRET="0123456789$abcdef \"0123456789\" #abcdef"
CREATE_ROOM_KEY=crk$-0123456789abcdef0123456789abcdef  # a comment after a space
PUBLIC_URL=                          # empty: only a comment
DOMAIN=live#kit.example.com
LOAD_MEASURE=rooms
COMPOSE_PROJECT_NAME=lkdsh` + "\r\nNODES=10.213.1.11\n"
	r := deploySh(t, file, []string{"FAKE_SERVICES=caddy", "LOAD_MEASURE=clients"}, "down")
	if r.code != 0 || r.compose == nil {
		t.Fatalf("deploy.sh down: exit %d, compose down not run (calls %q):\n%s", r.code, r.calls, r.out)
	}
	for k, want := range map[string]string{
		"REDIS_PASSWORD":       "pa$word$1",
		"LIVEKIT_API_KEY":      "API$key",
		"LIVEKIT_API_SECRET":   `0123456789$abcdef "0123456789" #abcdef`,
		"CREATE_ROOM_KEY":      "crk$-0123456789abcdef0123456789abcdef",
		"PUBLIC_URL":           "",
		"DOMAIN":               "live#kit.example.com",
		"LOAD_MEASURE":         "clients", // the caller's
		"COMPOSE_PROJECT_NAME": "lkdsh",
		"LIVEKIT1_IP":          "10.213.1.11",
	} {
		if got, ok := r.compose[k]; !ok || got != want {
			t.Errorf("compose got %s=%q (set: %v), want %q", k, got, ok, want)
		}
	}

	for _, c := range []struct{ line, want string }{
		{`CREATE_ROOM_KEY="crk-0123456789abcdef0123456789abcdef`, "line 6: CREATE_ROOM_KEY: the double quote is not closed"},
		{`CREATE_ROOM_KEY='a' b`, "line 6: CREATE_ROOM_KEY: the single quote is not closed (or text follows it)"},
		{`set -a`, "line 6: not KEY=VALUE"},
	} {
		r := deploySh(t, secrets+c.line+"\n", nil, "down")
		if r.code == 0 || !strings.Contains(r.out, c.want) || len(r.calls) > 0 {
			t.Errorf("%s: exit %d, docker calls %q, want an error %q:\n%s", c.line, r.code, r.calls, c.want, r.out)
		}
	}
}

// down with no container and no network of the project says so, without compose; with either, it
// runs compose down.
func TestDownWithNothingRunning(t *testing.T) {
	r := deploySh(t, secrets, nil, "down")
	if r.code != 0 || !strings.Contains(r.out, "nothing is running in project lkdsh") || r.called("docker-compose") {
		t.Errorf("down, nothing running: exit %d, calls %q:\n%s", r.code, r.calls, r.out)
	}
	for _, v := range []string{"FAKE_SERVICES=redis", "FAKE_NETWORKS=0123abcd"} {
		r := deploySh(t, secrets, []string{v}, "down")
		if r.code != 0 || !r.called("docker-compose -p lkdsh -f") || strings.Contains(r.out, "nothing is running") {
			t.Errorf("down with %s: exit %d, calls %q:\n%s", v, r.code, r.calls, r.out)
		}
	}
}

// status prints the table, not the logs Caddy writes while loading its config; if caddy livekit
// status fails, its error shows and status exits 1.
func TestStatusOnlyTheTable(t *testing.T) {
	r := deploySh(t, secrets, []string{"FAKE_SERVICES=caddy"}, "status")
	if r.code != 0 || !strings.Contains(r.out, "ND_x      10.213.1.11") || !strings.Contains(r.out, "Name   State") ||
		strings.Contains(r.out, `"level"`) {
		t.Errorf("status: exit %d:\n%s", r.code, r.out)
	}
	r = deploySh(t, secrets, []string{"FAKE_SERVICES=caddy", "FAKE_EXEC_FAIL=1"}, "status")
	if r.code != 1 || !strings.Contains(r.out, "Error: redis 10.213.1.2:6379: connection refused") ||
		strings.Contains(r.out, `"level":"info"`) || !strings.Contains(r.out, "Name   State") {
		t.Errorf("status, caddy livekit status failing: exit %d:\n%s", r.code, r.out)
	}
}

// The create-room command deploy prints works as pasted: its first line reads the key from the
// env file (never printing it), whatever the current directory.
func TestCreateRoomHintReadsTheKey(t *testing.T) {
	const key = "crk-$0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		file     string
		readsKey bool
	}{
		{"CREATE_ROOM_KEY=" + key + "\n", true},
		{"export CREATE_ROOM_KEY='" + key + "'\n", false},
	} {
		dir := t.TempDir()
		env := filepath.Join(dir, "my settings.env")
		if err := os.WriteFile(env, []byte(c.file), 0o600); err != nil {
			t.Fatal(err)
		}
		// deploy.sh's own functions, as cmd_deploy calls the hint once the stack is up
		script := `set -euo pipefail; root=$1; ENV_FILE=$2
log() { echo "deploy: $*" >&2; }; die() { log "error: $*"; exit 1; }
. "$root/docker/deploy/env.sh"; . "$root/docker/deploy/stack.sh"
read_env "$ENV_FILE"; create_room_hint http://127.0.0.1:8080`
		out, err := exec.Command("bash", "-c", script, "bash", repoRoot(t), env).CombinedOutput()
		if err != nil {
			t.Fatalf("create_room_hint: %v\n%s", err, out)
		}
		if strings.Contains(string(out), key) {
			t.Errorf("the hint prints the key:\n%s", out)
		}
		if !strings.Contains(string(out), `-H "Authorization: Bearer $CREATE_ROOM_KEY"`) {
			t.Errorf("the hint has no Authorization header with $CREATE_ROOM_KEY:\n%s", out)
		}
		first := ""
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "  CREATE_ROOM_KEY=") {
				first = strings.TrimSpace(l)
			}
		}
		if !c.readsKey {
			if !strings.Contains(string(out), "the value of CREATE_ROOM_KEY in "+env) {
				t.Errorf("%s: the hint does not say where the key is:\n%s", c.file, out)
			}
			continue
		}
		if first == "" {
			t.Fatalf("no line setting CREATE_ROOM_KEY:\n%s", out)
		}
		read := exec.Command("bash", "-c", first+`; printf %s "$CREATE_ROOM_KEY"`)
		read.Dir = t.TempDir()
		got, err := read.CombinedOutput()
		if err != nil || string(got) != key {
			t.Errorf("%s as pasted: %v, key %q, want %q", first, err, got, key)
		}
	}
}
