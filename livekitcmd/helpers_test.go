package livekitcmd

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
)

// testRedis is a redis-server of the test's own, on a free loopback port,
// with its files in a temporary directory.
type testRedis struct {
	addr string
	rc   *redis.Client
}

// startRedis starts redis-server from PATH with extra arguments (such as
// --requirepass) and stops it when the test ends.
func startRedis(t *testing.T, extra ...string) *testRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not in PATH: these tests need a real one (scripts/deps.sh installs it)")
	}
	var last string
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken before redis binds it
		port := freePort(t)
		dir := t.TempDir()
		args := append([]string{"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--logfile", ""}, extra...)
		var log bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatalf("redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill() // only the process this test started
			<-exited
		}
		r := &testRedis{addr: "127.0.0.1:" + port}
		r.rc = redis.NewClient(&redis.Options{Addr: r.addr, Password: passwordOf(extra)})
		if waitRedis(r.rc, exited) {
			t.Cleanup(func() {
				_ = r.rc.Close()
				stop()
			})
			return r
		}
		_ = r.rc.Close()
		stop()
		last = log.String()
	}
	t.Fatalf("redis-server did not start:\n%s", last)
	return nil
}

// waitRedis waits until Redis answers PING, or its process ends.
func waitRedis(rc *redis.Client, exited <-chan struct{}) bool {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rc.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

func passwordOf(args []string) string {
	for i, a := range args {
		if a == "--requirepass" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// lkNode is a `nodes` entry as LiveKit writes it, its stats written age ago.
func lkNode(id, ip string, state livekit.NodeState, age time.Duration) *livekit.Node {
	return &livekit.Node{Id: id, Ip: ip, State: state, Stats: &livekit.NodeStats{
		UpdatedAt: time.Now().Add(-age).Unix(), NumCpus: 2, LoadAvgLast1Min: 0.5, NumRooms: 1, NumClients: 2,
	}}
}

// register writes nodes into the `nodes` hash, field = node id.
func (r *testRedis) register(t *testing.T, nodes ...*livekit.Node) {
	t.Helper()
	for _, n := range nodes {
		b, err := proto.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.rc.HSet(context.Background(), "nodes", n.Id, b).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// liveNode is a node's HTTP port that answers like LiveKit's `GET /`.
func liveNode(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) }))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// liveNodeOn is liveNode on host (a loopback address of its own), so that
// the address the proxy dials names the node.
func liveNodeOn(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) }))
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return l.Addr().String()
}

// deadNode is an address where nothing listens.
func deadNode(t *testing.T) string { return "127.0.0.1:" + freePort(t) }

// writeCaddyfile writes a Caddyfile whose livekit_lb names r; dial maps
// node IPs to the addresses the proxy dials. Stats count as stale after an
// hour, so that no assertion depends on how fast the test runs.
func writeCaddyfile(t *testing.T, r *testRedis, dial map[string]string, extra ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, ":8088 {\n\tlivekit_lb {\n\t\tredis %s\n\t\tstale_after 1h\n\t\tredis_timeout 5s\n", r.addr)
	b.WriteString("\t\tapi_key APItest\n\t\tapi_secret 0123456789abcdef0123456789abcdef\n")
	for ip, addr := range dial {
		fmt.Fprintf(&b, "\t\tnode_address %s %s\n", ip, addr)
	}
	for _, line := range extra {
		fmt.Fprintf(&b, "\t\t%s\n", line)
	}
	b.WriteString("\t}\n}\n")
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cli runs `caddy livekit ARGS` in the test's process and returns what
// it printed on stdout, and its error (exit status 1 under Caddy).
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "livekit", SilenceErrors: true}
	setup(root)
	var out, errs bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errs)
	root.SetArgs(args)
	err := root.Execute()
	t.Logf("caddy livekit %s: err %v\n%s%s", strings.Join(args, " "), err, out.String(), errs.String())
	return out.String(), err
}

// mustCLI is cli that fails the test on an error.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(t, args...)
	if err != nil {
		t.Fatalf("caddy livekit %s: %v", strings.Join(args, " "), err)
	}
	return out
}
