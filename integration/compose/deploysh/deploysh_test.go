// Package deploysh tests what deploy.sh decides before Docker does anything: the env file read as
// data, NODES, THIS_NODE and REDIS_HOST checked, `down` with nothing running, `status` without
// Caddy's logs, the create-room command it prints, the proxies' ports (checked before anything
// changes, kept by an upgrade, the old proxy kept until a new one answers), images that cannot be
// pulled. deploy.sh runs with a fake docker, docker-compose and ss first in PATH, which record
// every call: no Docker is needed, so these tests run with the integration module's
// (scripts/test.sh), unlike ../ (scripts/test-compose.sh).
package deploysh

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeDocker answers what deploy.sh asks docker: FAKE_SERVICES (the project's containers'
// services), FAKE_PUBLISHED (SERVICE:PORT: a running container of the project publishing
// 127.0.0.1:PORT), FAKE_NETWORKS (its networks), FAKE_EXEC_FAIL (`docker exec` fails as Caddy does
// without Redis), FAKE_IMAGES (a file listing the images that exist; unset: every image exists),
// FAKE_PULL_HANG (`docker pull` never answers, as on a network that drops packets; otherwise it is
// refused at once), FAKE_NO_LAYER4 (the Caddy image was built without caddy-l4). `docker compose` is missing, so deploy.sh uses docker-compose.
const fakeDocker = `#!/bin/sh
printf 'docker %s\n' "$*" >>"$FAKE_LOG"
case "$*" in
"compose "*) exit 1 ;;
"ps -a "*) [ -z "$FAKE_SERVICES" ] || printf '%s\n' $FAKE_SERVICES ;;
"ps --filter "*) for p in $FAKE_PUBLISHED; do printf '%s 127.0.0.1:%s->80/tcp\n' "${p%%:*}" "${p#*:}"; done ;;
"network ls "*) [ -z "$FAKE_NETWORKS" ] || printf '%s\n' $FAKE_NETWORKS ;;
"network inspect "*) exit 1 ;;
"image inspect "*) [ -z "$FAKE_IMAGES" ] || grep -qxF "$3" "$FAKE_IMAGES" ;;
"pull "*)
	[ -z "$FAKE_PULL_HANG" ] || exec sleep 20
	exit 1
	;;
"run --rm --entrypoint caddy "*" list-modules")
	echo http.handlers.livekit_lb
	[ -n "$FAKE_NO_LAYER4" ] || echo layer4
	;;
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
`

// fakeCompose records its calls, and the environment deploy.sh gave the last one (FAKE_LOG.env).
const fakeCompose = `#!/bin/sh
printf 'docker-compose %s\n' "$*" >>"$FAKE_LOG"
env >"$FAKE_LOG.env"
case "$*" in
*" ps -q "*) echo c0ffee ;;
*" ps") echo 'Name   State' ;;
esac
exit 0
`

// fakeSS answers ` + "`ss -Hltn \"sport = :PORT\"`" + ` as ss does, from FAKE_LISTEN (ADDRESS:PORT of every
// listening socket): the test does not depend on what listens on the machine that runs it.
const fakeSS = `#!/bin/sh
port=${2#sport = :}
for a in $FAKE_LISTEN; do
	[ "${a##*:}" != "$port" ] || printf 'LISTEN 0      4096      %s      0.0.0.0:*\n' "$a"
done
`

// fakeBuild stands in for docker/build-images.sh in a copy of the checkout (checkoutCopy): it
// records what it is asked to build, and the images then exist (FAKE_IMAGES).
const fakeBuild = `#!/bin/sh
printf 'build-images.sh ONLY=%s REDIS_IMAGE=%s LIVEKIT_IMAGE=%s\n' "$ONLY" "$REDIS_IMAGE" "$LIVEKIT_IMAGE" >>"$FAKE_LOG"
for i in $ONLY; do
	case $i in redis) echo "$REDIS_IMAGE" ;; livekit) echo "$LIVEKIT_IMAGE" ;; caddy) echo "$CADDY_IMAGE" ;; esac
done >>"$FAKE_IMAGES"
`

type result struct {
	out     string
	code    int
	calls   []string          // docker, docker-compose and build-images.sh command lines, in order
	compose map[string]string // the environment of the last docker-compose call, if any
}

// deploySh runs deploy.sh ARGS with env file content envFile, the fake Docker, and only the given
// variables besides PATH, HOME and ENV_FILE.
func deploySh(t *testing.T, envFile string, vars []string, args ...string) result {
	t.Helper()
	return deployShIn(t, t.TempDir(), repoRoot(t), envFile, vars, args...)
}

// deployShIn is deploySh with the directory of the env file and the calls' log (dir/calls, emptied
// first), and the checkout that deploy.sh runs from.
func deployShIn(t *testing.T, dir, root, envFile string, vars []string, args ...string) result {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"docker": fakeDocker, "docker-compose": fakeCompose, "ss": fakeSS} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := filepath.Join(dir, "my settings.env") // a path with a space, as a user's may be
	if err := os.WriteFile(env, []byte(envFile), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "calls")
	for _, f := range []string{log, log + ".env"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "deploy.sh")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + dir, "ENV_FILE=" + env,
		"FAKE_LOG=" + log, "FAKE_SERVICES=", "FAKE_PUBLISHED=", "FAKE_LISTEN=", "FAKE_NETWORKS=", "FAKE_EXEC_FAIL=",
		"FAKE_IMAGES=", "FAKE_PULL_HANG=", "FAKE_NO_LAYER4=", "DEPLOY_WAIT=1"}, vars...) // a deploy that gets past the checks fails fast
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

// singleRunning: what the fake Docker answers while this project's single node runs, its proxy
// published on 127.0.0.1:PORT (Docker's proxy listening there).
func singleRunning(port string) []string {
	return []string{"FAKE_SERVICES=redis livekit1 caddy", "FAKE_PUBLISHED=caddy:" + port, "FAKE_LISTEN=127.0.0.1:" + port}
}

const cluster = "NODES=10.213.1.11,10.213.1.12,10.213.1.13\n"

// The cluster's first proxy is on the single node's port (CADDY_PORT, default 8080) unless
// CADDY1_PORT is set, upgraded or fresh, so an upgrade keeps the address clients use; a deploy that
// moves it says so.
func TestClusterKeepsTheProxyPort(t *testing.T) {
	for _, c := range []struct {
		name, env      string
		vars           []string
		caddy1, caddy2 string
		moves          string
	}{
		{"upgrade", cluster, singleRunning("8080"), "8080", "8082", ""},
		{"upgrade, CADDY_PORT", cluster + "CADDY_PORT=9000\n", singleRunning("9000"), "9000", "8082", ""},
		{"fresh", cluster, nil, "8080", "8082", ""},
		{"fresh, CADDY_PORT", cluster + "CADDY_PORT=9000\nCADDY2_PORT=9001\n", nil, "9000", "9001", ""},
		{"upgrade, CADDY1_PORT", cluster + "CADDY1_PORT=8081\n", singleRunning("8080"), "8081", "8082",
			"the proxy moves from port 8080 to 8081 (CADDY1_PORT): clients must use the new address; set CADDY1_PORT=8080 in "},
	} {
		r := deploySh(t, secrets+c.env, c.vars, "deploy")
		if r.compose == nil || r.compose["CADDY1_PORT"] != c.caddy1 || r.compose["CADDY2_PORT"] != c.caddy2 {
			t.Errorf("%s: compose got CADDY1_PORT=%q CADDY2_PORT=%q, want %s and %s (calls %q):\n%s", c.name,
				r.compose["CADDY1_PORT"], r.compose["CADDY2_PORT"], c.caddy1, c.caddy2, r.calls, r.out)
		}
		if got := strings.Contains(r.out, "the proxy moves"); got != (c.moves != "") || !strings.Contains(r.out, c.moves) {
			t.Errorf("%s: want a line %q (none if empty):\n%s", c.name, c.moves, r.out)
		}
	}
}

// A port the new stack would publish that another program holds stops deploy before anything is
// pulled, built, stopped or started, naming the port and the setting to change; a port published
// by this project's own running proxy is not taken.
func TestTakenPortStopsDeployUntouched(t *testing.T) {
	for _, c := range []struct {
		name, env, listen, want string
		running                 bool
	}{
		{"upgrade, caddy2's port", cluster, "0.0.0.0:8082", "port 8082 (127.0.0.1:8082, CADDY2_PORT) is taken by another program: set CADDY2_PORT in ", true},
		{"upgrade, caddy1's port", cluster + "CADDY1_PORT=8081\n", "127.0.0.1:8081", "port 8081 (127.0.0.1:8081, CADDY1_PORT) is taken", true},
		{"fresh single", "", "[::]:8080", "port 8080 (127.0.0.1:8080, CADDY_PORT) is taken", false},
		{"HTTP_BIND everywhere", "HTTP_BIND=0.0.0.0\n", "127.0.0.5:8080", "port 8080 (0.0.0.0:8080, CADDY_PORT) is taken", false},
		{"two proxies on one port", cluster + "CADDY_PORT=8082\n", "", "CADDY1_PORT and CADDY2_PORT are both 8082", false},
		{"another address", cluster, "127.0.0.5:8082", "", true},
	} {
		var vars []string
		if c.running {
			vars = singleRunning("8080")
			vars[2] += " " + c.listen
		} else {
			vars = []string{"FAKE_LISTEN=" + c.listen}
		}
		r := deploySh(t, secrets+c.env, vars, "deploy")
		if c.want == "" {
			if !r.called("docker-compose") {
				t.Errorf("%s: deploy stopped, want it to go on:\n%s", c.name, r.out)
			}
			continue
		}
		if r.code == 0 || !strings.Contains(r.out, "error: "+c.want) || !strings.Contains(r.out, "nothing was changed") {
			t.Errorf("%s: exit %d, want an error %q:\n%s", c.name, r.code, c.want, r.out)
		}
		for _, call := range r.calls {
			if call != "docker compose version" && !strings.HasPrefix(call, "docker ps ") {
				t.Errorf("%s: deploy.sh did more than look before failing: %q", c.name, call)
			}
		}
	}
}

// Upgrading a single node to a cluster, the old proxy stays until a new one answers: caddy2 starts
// first (caddy1 takes the single proxy's port, which two containers cannot publish at once), then
// `up --remove-orphans` replaces caddy with caddy1. A new proxy that never answers leaves the old
// one running.
func TestUpgradeKeepsTheOldProxyUntilANewOneAnswers(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := freePort(t), freePort(t)
	env := secrets + cluster + "CADDY_PORT=" + p1 + "\nCADDY2_PORT=" + p2 + "\n"

	r := deployShIn(t, dir, repoRoot(t), env, singleRunning(p1), "deploy")
	if r.code == 0 || !strings.Contains(r.out, "the new proxy caddy2 does not answer at http://127.0.0.1:"+p2) ||
		!strings.Contains(r.out, "the old one is kept") {
		t.Errorf("caddy2 not answering: exit %d, want an error saying the old proxy is kept:\n%s", r.code, r.out)
	}
	if !r.called("docker-compose -p lkdsh -f " + filepath.Join(repoRoot(t), "docker/compose.cluster.yml") + " up -d caddy2") {
		t.Errorf("caddy2 not started on its own first: %q", r.calls)
	}
	for _, c := range r.calls {
		if strings.Contains(c, "--remove-orphans") {
			t.Errorf("the old proxy was removed although no new one answers: %q", c)
		}
	}

	// The old proxy answers on p1 throughout; caddy2 on p2 once compose has started it.
	serve(t, p1)
	done, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(done); <-stopped }()
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "calls")); strings.Contains(string(b), " up -d caddy2\n") {
				serve(t, p2)
				return
			}
		}
	}()
	r = deployShIn(t, dir, repoRoot(t), env, append(singleRunning(p1), "DEPLOY_WAIT=10"), "deploy")
	var ups []string
	for _, c := range r.calls {
		if i := strings.Index(c, " up "); i >= 0 && strings.HasPrefix(c, "docker-compose") {
			ups = append(ups, c[i+1:])
		}
	}
	if r.code != 0 || !reflect.DeepEqual(ups, []string{"up -d caddy2", "up -d --remove-orphans"}) {
		t.Errorf("upgrade: exit %d, compose ups %q, want caddy2 first, then the rest with the old proxy removed:\n%s", r.code, ups, r.out)
	}
	if !strings.Contains(r.out, "curl -sS http://127.0.0.1:"+p1+"/api/create-room") {
		t.Errorf("the cluster is not on the single node's address 127.0.0.1:%s:\n%s", p1, r.out)
	}
}

// A one-machine stack published on one address of the machine (HTTP_BIND) is waited for there:
// a proxy that answers on HTTP_BIND:CADDY_PORT is up, though nothing answers on 127.0.0.1.
func TestProxyWaitedForOnHTTPBind(t *testing.T) {
	p := freePort(t)
	serveOn(t, "127.0.0.2", p) // a loopback address of its own, as a LAN address would be
	r := deploySh(t, secrets+"NODES=10.213.1.11\nHTTP_BIND=127.0.0.2\nCADDY_PORT="+p+"\n", nil, "deploy")
	if r.code != 0 || strings.Contains(r.out, "does not answer") || !strings.Contains(r.out, "http://127.0.0.2:"+p+"/api/create-room") {
		t.Errorf("HTTP_BIND=127.0.0.2: exit %d:\n%s", r.code, r.out)
	}
}

// An official image that cannot be pulled is built locally once; the pull is bounded by
// PULL_TIMEOUT, and later commands use the local build without asking the registry again.
func TestUnpullableImageFallbackRemembered(t *testing.T) {
	root, dir := checkoutCopy(t), t.TempDir()
	images := filepath.Join(dir, "images") // the images that exist: our Caddy only
	if err := os.WriteFile(images, []byte("caddy-livekit:local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := []string{"FAKE_IMAGES=" + images, "FAKE_PULL_HANG=1", "PULL_TIMEOUT=1"}
	start := time.Now()
	r := deployShIn(t, dir, root, secrets, vars, "deploy")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("deploy took %v with a registry that never answers and PULL_TIMEOUT=1", d)
	}
	for _, want := range []string{
		"deploy: redis:7 cannot be pulled (no answer within 1s, PULL_TIMEOUT): using the local build local/redis:7, now and from now on",
		"deploy: livekit/livekit-server:v1.13.5 cannot be pulled (no answer within 1s, PULL_TIMEOUT): using the local build local/livekit-server:v1.13.5",
	} {
		if strings.Count(r.out, want) != 1 {
			t.Errorf("first deploy: want one line %q:\n%s", want, r.out)
		}
	}
	if !r.called("docker pull -q redis:7") || !r.called("build-images.sh ONLY=redis livekit  REDIS_IMAGE=local/redis:7 LIVEKIT_IMAGE=local/livekit-server:v1.13.5") {
		t.Errorf("first deploy: want a pull, then a local build: %q", r.calls)
	}

	for _, cmd := range []string{"deploy", "backup"} {
		r = deployShIn(t, dir, root, secrets, append(vars, "FAKE_SERVICES=redis livekit1 caddy"), cmd, filepath.Join(dir, "b.tar.gz"))
		if r.called("docker pull") || r.called("build-images.sh") || strings.Contains(r.out, "cannot be pulled") {
			t.Errorf("%s after the fallback: pulled or built again (calls %q):\n%s", cmd, r.calls, r.out)
		}
		if cmd == "deploy" && (r.compose["REDIS_IMAGE"] != "local/redis:7" || r.compose["LIVEKIT_IMAGE"] != "local/livekit-server:v1.13.5") {
			t.Errorf("deploy after the fallback: compose got REDIS_IMAGE=%q LIVEKIT_IMAGE=%q", r.compose["REDIS_IMAGE"], r.compose["LIVEKIT_IMAGE"])
		}
	}

	// PULL_TIMEOUT=0: never asks the registry.
	root, dir = checkoutCopy(t), t.TempDir()
	images = filepath.Join(dir, "images")
	if err := os.WriteFile(images, []byte("caddy-livekit:local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = deployShIn(t, dir, root, secrets, []string{"FAKE_IMAGES=" + images, "PULL_TIMEOUT=0"}, "deploy")
	if r.called("docker pull") || !r.called("build-images.sh ONLY=redis livekit ") {
		t.Errorf("PULL_TIMEOUT=0: want a local build and no pull: %q", r.calls)
	}
}

// checkoutCopy: deploy.sh and the files it reads in a directory of their own, with fakeBuild as
// docker/build-images.sh, so a test can have images built.
func checkoutCopy(t *testing.T) string {
	t.Helper()
	src, dst := repoRoot(t), t.TempDir()
	files, err := filepath.Glob(filepath.Join(src, "docker/deploy/*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dst, "docker/deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range append(files, filepath.Join(src, "deploy.sh"), filepath.Join(src, ".env.example")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(src, f)
		if err := os.WriteFile(filepath.Join(dst, rel), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "docker/build-images.sh"), []byte(fakeBuild), 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// freePort: a loopback TCP port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// serve answers HTTP on 127.0.0.1:PORT until the test ends, as a proxy would.
func serve(t *testing.T, port string) { serveOn(t, "127.0.0.1", port) }

// serveOn is serve on host.
func serveOn(t *testing.T, host, port string) {
	l, err := net.Listen("tcp", host+":"+port)
	if err != nil {
		t.Error(err)
		return
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
}
