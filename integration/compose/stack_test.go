// Package compose tests the Docker deployment: deploy.sh and the compose stacks in docker/, with
// real LiveKit clients (lkclient/) that run in containers on the stack's own network.
//
//	LKLB_COMPOSE_TESTS=1 go test ./compose/ -v -timeout 30m     # from integration/; or scripts/test-compose.sh
//
// The images must exist (docker/build-images.sh); the tests never build them. Without
// LKLB_COMPOSE_TESTS=1 the package does nothing, so `go test ./...` of the integration module
// (scripts/test.sh) is not slowed down. Every stack has a unique compose project, subnet and
// loopback ports; its containers, network and volume are removed when its test ends, failed or
// not. The host only talks to loopback ports and to containers through docker.
package compose

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	repoRoot    string
	clientImage string
)

func TestMain(m *testing.M) {
	if os.Getenv("LKLB_COMPOSE_TESTS") != "1" {
		fmt.Println("compose: skipped (set LKLB_COMPOSE_TESTS=1, or run scripts/test-compose.sh)")
		os.Exit(0)
	}
	wd, _ := os.Getwd()
	repoRoot = filepath.Dir(filepath.Dir(wd)) // integration/compose -> repository
	for _, img := range []string{env("REDIS_IMAGE", "local/redis:7"), env("LIVEKIT_IMAGE", "local/livekit-server:v1.13.5"),
		env("CADDY_IMAGE", "caddy-livekit:local"), env("BASE_IMAGE", "local/debian:bookworm")} {
		if err := exec.Command("docker", "image", "inspect", img).Run(); err != nil {
			fmt.Fprintf(os.Stderr, "compose: image %s missing: run docker/build-images.sh first\n", img)
			os.Exit(1)
		}
	}
	start := time.Now()
	if err := buildClientImage(); err != nil {
		fmt.Fprintln(os.Stderr, "compose: client image:", err)
		os.Exit(1)
	}
	fmt.Printf("compose: client image %s built in %s\n", clientImage, time.Since(start).Round(100*time.Millisecond))
	code := m.Run()
	_ = exec.Command("docker", "rmi", "-f", clientImage).Run()
	os.Exit(code)
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// buildClientImage builds lkclient and puts it on the local base image (classic builder, no
// registry). Default build flags, as the other integration tests have: on a fresh machine the build
// then comes from their build cache; the base has the glibc it links.
func buildClientImage() error {
	dir, err := os.MkdirTemp("", "lkclient-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "lkclient"), "./lkclient")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}
	df := fmt.Sprintf("FROM %s\nCOPY lkclient /usr/local/bin/lkclient\nENTRYPOINT [\"/usr/local/bin/lkclient\"]\n",
		env("BASE_IMAGE", "local/debian:bookworm"))
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	clientImage = "lklb-compose-lkclient:" + randHex(4)
	cmd := exec.Command("docker", "build", "-q", "-t", clientImage, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build: %v: %s", err, out)
	}
	return nil
}

// stack is one deployment made by deploy.sh from its own env file.
type stack struct {
	t       *testing.T
	dir     string
	project string
	prefix  string // the /24 of the stack's network, e.g. 10.213.137
	vars    map[string]string
	order   []string
	// machine: the container in whose network namespace deploy.sh runs (machines_test.go); "" for
	// this host's. env: variables given to deploy.sh besides ENV_FILE.
	machine string
	env     []string
}

// in runs f as a subtest whose failures the stack's helpers report.
func (s *stack) in(t *testing.T, name string, f func(t *testing.T)) {
	parent := s.t
	t.Run(name, func(t *testing.T) {
		s.t = t
		defer func() { s.t = parent }()
		f(t)
	})
}

// newStack writes an env file for a unique project with nodes LiveKit nodes (1 or 3) and
// registers the teardown of everything the project creates.
func newStack(t *testing.T, nodes int) *stack {
	t.Helper()
	s := &stack{t: t, dir: t.TempDir(), project: "lkct" + randHex(3), prefix: freeSubnet(t), vars: map[string]string{}}
	s.set("COMPOSE_PROJECT_NAME", s.project)
	s.set("NODES", s.nodeList(nodes))
	s.set("REDIS_PASSWORD", "pw-"+randHex(8))
	s.set("LIVEKIT_API_KEY", "APIct"+randHex(3))
	s.set("LIVEKIT_API_SECRET", randHex(20))
	s.set("CREATE_ROOM_KEY", "crk-"+randHex(16)) // 32+ characters, as livekit_token requires
	s.set("CREATE_ROOM_CALLER_IDENTITY", "true") // the tests name their participants
	s.set("CADDY_PORT", freePort(t))
	s.set("CADDY1_PORT", freePort(t))
	s.set("CADDY2_PORT", freePort(t))
	s.set("LIVEKIT_LOG_LEVEL", "debug")
	// Every node of these stacks shares this machine's kernel, so their load averages cannot tell
	// them apart: place by LiveKit's room counts.
	s.set("LOAD_MEASURE", "rooms")
	for _, k := range []string{"REDIS_IMAGE", "LIVEKIT_IMAGE", "CADDY_IMAGE", "BASE_IMAGE"} {
		if v := os.Getenv(k); v != "" {
			s.set(k, v)
		}
	}
	s.writeEnv()
	t.Cleanup(s.teardown)
	return s
}

func (s *stack) nodeList(n int) string {
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("%s.%d", s.prefix, 11+i)
	}
	return strings.Join(ips, ",")
}

func (s *stack) set(k, v string) {
	if _, ok := s.vars[k]; !ok {
		s.order = append(s.order, k)
	}
	s.vars[k] = v
}

func (s *stack) writeEnv() {
	var b strings.Builder
	for _, k := range s.order {
		fmt.Fprintf(&b, "%s=%s\n", k, s.vars[k])
	}
	if err := os.WriteFile(filepath.Join(s.dir, ".env"), []byte(b.String()), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// deploySh runs deploy.sh with the stack's env file only (none of the caller's variables).
func (s *stack) deploySh(args ...string) (string, error) {
	argv := append([]string{"bash", filepath.Join(repoRoot, "deploy.sh")}, args...)
	if s.machine != "" {
		pid, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", s.machine).Output()
		if err != nil {
			return "", fmt.Errorf("machine %s: %v", s.machine, err)
		}
		argv = append([]string{"nsenter", "--net=/proc/" + strings.TrimSpace(string(pid)) + "/ns/net"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "ENV_FILE=" + filepath.Join(s.dir, ".env")}
	cmd.Env = append(cmd.Env, s.env...)
	for _, k := range []string{"DOCKER_HOST", "BUILD_CACHE", "GOPATH", "GOCACHE", "GOMODCACHE", "GOFLAGS"} {
		if v := os.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (s *stack) mustDeploySh(args ...string) string {
	s.t.Helper()
	start := time.Now()
	out, err := s.deploySh(args...)
	if err != nil {
		s.t.Fatalf("deploy.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	s.t.Logf("deploy.sh %s: %s", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	return out
}

// teardown removes the project's containers, network and volume, whatever state they are in.
func (s *stack) teardown() {
	ids, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+s.project).Output()
	if f := strings.Fields(string(ids)); len(f) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, f...)...).Run()
	}
	ids, _ = exec.Command("docker", "ps", "-aq", "--filter", "name=^"+s.project+"-client").Output()
	if f := strings.Fields(string(ids)); len(f) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f"}, f...)...).Run()
	}
	_ = exec.Command("docker", "network", "rm", s.project+"_lk").Run()
	_ = exec.Command("docker", "volume", "rm", s.project+"_redis-data", s.project+"_caddy-data").Run()
}

// container is the ID of a service's container ("" if none).
func (s *stack) container(service string) string {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.service="+service).Output()
	return strings.TrimSpace(string(out))
}

func (s *stack) dockerExec(service string, args ...string) string {
	s.t.Helper()
	id := s.container(service)
	if id == "" {
		s.t.Fatalf("no container for service %s", service)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("docker", append([]string{"exec", id}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("docker exec %s %v: %v\n%s%s", service, args, err, out, stderr.Bytes())
	}
	return string(out)
}

// redisHash is HGETALL of key.
func (s *stack) redisHash(key string) map[string]string {
	lines := strings.Split(strings.TrimRight(s.dockerExec("redis", "redis-cli", "--raw", "hgetall", key), "\n"), "\n")
	m := map[string]string{}
	for i := 0; i+1 < len(lines); i += 2 {
		m[lines[i]] = lines[i+1]
	}
	return m
}

// keysScript answers, for every key: key, type, sha1(DUMP), sha1(content), PTTL. The content
// digest is canonical (hash fields and set members sorted): a hash in hashtable encoding DUMPs its
// fields in the dict's iteration order, which a RESTORE does not always reproduce.
const keysScript = `local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local d = redis.call('DUMP', k)
  if d then
    local t = redis.call('TYPE', k).ok
    local c = {}
    if t == 'string' then c = {redis.call('GET', k)}
    elseif t == 'hash' then
      local h = redis.call('HGETALL', k)
      local f = {}
      for i = 1, #h, 2 do table.insert(f, h[i] .. '\0' .. h[i + 1]) end
      table.sort(f); c = f
    elseif t == 'set' then c = redis.call('SMEMBERS', k); table.sort(c)
    elseif t == 'zset' then c = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
    elseif t == 'list' then c = redis.call('LRANGE', k, 0, -1)
    else c = {d} end
    table.insert(out, k); table.insert(out, t); table.insert(out, redis.sha1hex(d))
    table.insert(out, redis.sha1hex(table.concat(c, '\1'))); table.insert(out, tostring(redis.call('PTTL', k)))
  end
end
return out`

// keyState is one key as keysScript sees it.
type keyState struct {
	Type, Dump, Content string
	PTTL                int64
}

// redisKeys is every key's state.
func (s *stack) redisKeys() map[string]keyState {
	out := strings.TrimRight(s.dockerExec("redis", "redis-cli", "--raw", "eval", keysScript, "0"), "\n")
	m := map[string]keyState{}
	if out == "" {
		return m
	}
	lines := strings.Split(out, "\n")
	for i := 0; i+4 < len(lines); i += 5 {
		var ttl int64
		fmt.Sscan(lines[i+4], &ttl)
		m[lines[i]] = keyState{Type: lines[i+1], Dump: lines[i+2], Content: lines[i+3], PTTL: ttl}
	}
	return m
}

// nodeIDs maps LiveKit node IDs to their service (livekit1...) through caddy livekit status.
func (s *stack) nodeIDs(caddy string) map[string]string {
	var st struct {
		Nodes []struct {
			ID string `json:"id"`
			IP string `json:"ip"`
		} `json:"nodes"`
	}
	out := s.dockerExec(caddy, "caddy", "livekit", "status", "--json", "--config", "/etc/caddy/Caddyfile")
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil {
		s.t.Fatalf("caddy livekit status --json: %v\n%s", err, out)
	}
	byIP := map[string]string{}
	for i, ip := range strings.Split(s.vars["NODES"], ",") {
		byIP[ip] = fmt.Sprintf("livekit%d", i+1)
	}
	m := map[string]string{}
	for _, n := range st.Nodes {
		if svc, ok := byIP[n.IP]; ok {
			m[n.ID] = svc
		}
	}
	return m
}

// wsConnected maps identity -> node services whose log has "new client WS connected" for it.
func (s *stack) wsConnected(services ...string) map[string][]string {
	m := map[string][]string{}
	for _, svc := range services {
		id := s.container(svc)
		out, _ := exec.Command("docker", "logs", id).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.Contains(line, "new client WS connected") {
				continue
			}
			var l struct {
				Participant string `json:"participant"`
			}
			if json.Unmarshal([]byte(line[strings.Index(line, "{"):]), &l) == nil && l.Participant != "" {
				m[l.Participant] = append(m[l.Participant], svc)
			}
		}
	}
	return m
}

// createRoom calls the create-room endpoint from the host, on the published loopback port.
func (s *stack) createRoom(portVar, room, identity string) {
	s.t.Helper()
	body := fmt.Sprintf(`{"room_name": %q, "user_name": %q, "identity": %q}`, room, identity, identity)
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+s.vars[portVar]+"/api/create-room", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.vars["CREATE_ROOM_KEY"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		s.t.Fatalf("create-room %s: %v", room, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"token"`)) {
		s.t.Fatalf("create-room %s: HTTP %d %s", room, resp.StatusCode, b)
	}
}

// client is one lkclient container on the stack's network.
type client struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan map[string]any
	done  chan error
	mu    sync.Mutex
	log   bytes.Buffer
}

// startClient runs lkclient on the stack's network against the given Caddy service (http://caddy:80 ...).
func (s *stack) startClient(caddy string, args ...string) *client {
	s.t.Helper()
	return s.runClient([]string{"--network", s.project + "_lk"}, "http://"+caddy+":80", args...)
}

// runClient runs lkclient in a container made with the docker run options opts, against api.
func (s *stack) runClient(opts []string, api string, args ...string) *client {
	s.t.Helper()
	c := &client{t: s.t, name: s.project + "-client-" + randHex(3), lines: make(chan map[string]any, 100), done: make(chan error, 1)}
	dargs := append([]string{"run", "--rm", "-i", "--name", c.name}, opts...)
	dargs = append(dargs, "-e", "CREATE_ROOM_KEY="+s.vars["CREATE_ROOM_KEY"], clientImage, "-api", api)
	c.cmd = exec.Command("docker", append(dargs, args...)...)
	c.cmd.Stderr = &lockedWriter{c}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		s.t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				c.lines <- m
			} else {
				_, _ = (&lockedWriter{c}).Write(append(sc.Bytes(), '\n'))
			}
		}
		close(c.lines)
		c.done <- c.cmd.Wait()
	}()
	s.t.Cleanup(func() {
		_ = c.stdin.Close()
		_ = exec.Command("docker", "rm", "-f", c.name).Run()
	})
	return c
}

type lockedWriter struct{ c *client }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.log.Write(p)
}

func (c *client) stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

// next waits for the client's next JSON line; an "error" line or an exit fails the test.
func (c *client) next(timeout time.Duration) map[string]any {
	c.t.Helper()
	select {
	case m, ok := <-c.lines:
		if !ok {
			c.t.Fatalf("lkclient exited without a result: %v\n%s", <-c.done, c.stderr())
		}
		if m["event"] == "error" {
			c.t.Fatalf("lkclient: %v\n%s", m["error"], c.stderr())
		}
		return m
	case <-time.After(timeout):
		c.t.Fatalf("lkclient: no result within %s\n%s", timeout, c.stderr())
	}
	return nil
}

func (c *client) send(line string) {
	_, _ = io.WriteString(c.stdin, line+"\n")
}

// wait closes stdin and waits for the client to exit.
func (c *client) wait(timeout time.Duration) {
	c.t.Helper()
	_ = c.stdin.Close()
	for range c.lines {
	}
	select {
	case err := <-c.done:
		if err != nil {
			c.t.Fatalf("lkclient: %v\n%s", err, c.stderr())
		}
	case <-time.After(timeout):
		c.t.Fatalf("lkclient did not exit within %s", timeout)
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

var subnetMu sync.Mutex

// freeSubnet picks 10.213.X (X in 100..249) that no Docker network uses yet.
func freeSubnet(t *testing.T) string {
	subnetMu.Lock()
	defer subnetMu.Unlock()
	out, _ := exec.Command("sh", "-c", `docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' $(docker network ls -q)`).Output()
	used := string(out)
	for i := 0; i < 100; i++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(150))
		p := fmt.Sprintf("10.213.%d", 100+n.Int64())
		if !strings.Contains(used, p+".0/") {
			return p
		}
	}
	t.Fatal("no free 10.213.X.0/24 subnet")
	return ""
}
