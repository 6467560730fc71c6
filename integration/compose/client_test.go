package compose

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"sync"
	"testing"
	"time"
)

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
