package harness

import (
	"context"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server on a loopback port, without persistence.
type Redis struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	client *redis.Client
	proc   *process
}

// StartRedis starts redis-server (REDIS_SERVER_BIN, else redis-server on PATH)
// on a free port of 127.0.0.1 and waits until it answers PING. It is killed when
// the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := findBinary("REDIS_SERVER_BIN", "redis-server", "redis-server")
	if err != nil {
		t.Fatal(err)
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir(), port: FreePort(t)}
	r.client = redis.NewClient(&redis.Options{Addr: r.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.kill()
		}
		r.client.Close()
	})
	r.start()
	return r
}

// Addr is "127.0.0.1:PORT".
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// Client is a go-redis client of this server that honours context deadlines;
// it is closed when the test ends.
func (r *Redis) Client() *redis.Client { return r.client }

// Stop shuts the server down with SIGTERM and waits for it to exit.
func (r *Redis) Stop() { r.proc.stop(10 * time.Second) }

// Kill kills the server with SIGKILL and waits for it to exit.
func (r *Redis) Kill() { r.proc.kill() }

// Pause freezes the server (SIGSTOP): connections stay open, nothing answers.
func (r *Redis) Pause() { r.proc.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() { r.proc.signal(syscall.SIGCONT) }

// Restart starts the server again on the same port, empty, stopping it first
// (SIGTERM) if it is still running.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	r.start()
}

func (r *Redis) start() {
	r.t.Helper()
	args := []string{
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir,
	}
	p, err := startProcess(r.bin, args, nil, filepath.Join(r.dir, "redis.log"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.proc = p
	ready := Poll(10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return p.exited() || r.client.Ping(ctx).Err() == nil
	})
	if !ready || p.exited() {
		r.t.Fatalf("redis-server on %s did not come up:\n%s", r.Addr(), tail(p.logs.Lines(), 20))
	}
}
