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
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
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
	// `$` in secrets: deploy.sh reads the env file as data, never substitutes (docs/deploy.md)
	s.set("REDIS_PASSWORD", "pw-$"+randHex(8))
	s.set("LIVEKIT_API_KEY", "APIct"+randHex(3))
	s.set("LIVEKIT_API_SECRET", randHex(20))
	s.set("CREATE_ROOM_KEY", "crk-$"+randHex(16)) // 32+ characters, as livekit_token requires
	s.set("CREATE_ROOM_CALLER_IDENTITY", "true")  // the tests name their participants
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

func freePort(t *testing.T) string { return strconv.Itoa(harness.FreePort(t)) }

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
