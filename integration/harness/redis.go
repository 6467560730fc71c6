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
	opts   RedisOptions
	client *redis.Client
	proc   *process
}

// RedisOptions make a redis-server other than a plain one.
type RedisOptions struct {
	// Name names the server in its log file and in failure messages
	// (default "redis").
	Name string
	// Args are more redis-server arguments (--replicaof HOST PORT).
	Args []string
	// Sentinel, if set, is a sentinel configuration file: the server runs as
	// a Redis Sentinel with it, and without the persistence options.
	Sentinel string
}

// StartRedis starts redis-server (REDIS_SERVER_BIN, else redis-server on PATH)
// on a free port of 127.0.0.1 and waits until it answers PING. It is killed when
// the test ends.
func StartRedis(t testing.TB) *Redis { return StartRedisWith(t, RedisOptions{}) }

// StartRedisWith is StartRedis for a replica or a sentinel.
func StartRedisWith(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	bin, err := findBinary("REDIS_SERVER_BIN", "redis-server", "redis-server")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Name == "" {
		opts.Name = "redis"
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir(), port: FreePort(t), opts: opts}
	r.client = redis.NewClient(&redis.Options{Addr: r.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.kill()
			if t.Failed() {
				t.Logf("%s log:\n%s", opts.Name, tail(r.proc.logs.Lines(), 15))
			}
		}
		r.client.Close()
	})
	r.start()
	return r
}

// Addr is "127.0.0.1:PORT".
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// Port is the server's port.
func (r *Redis) Port() int { return r.port }

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
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir}
	if r.opts.Sentinel != "" { // the configuration file comes first
		args = append([]string{r.opts.Sentinel, "--sentinel"}, args...)
	} else {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	p, err := startProcess(r.bin, append(args, r.opts.Args...), nil, filepath.Join(r.dir, r.opts.Name+".log"))
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
		r.t.Fatalf("%s on %s did not come up:\n%s", r.opts.Name, r.Addr(), tail(p.logs.Lines(), 20))
	}
}
