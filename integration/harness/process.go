package harness

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one child process. Its stdout and stderr go to a log file and to an
// in-memory buffer that tests can search.
type process struct {
	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{} // closed once the process has exited and its output is read
}

// startProcess starts bin with args, appending its output to logFile. The
// process gets SIGKILL if the test process dies without cleaning up.
func startProcess(bin string, args, env []string, logFile string) (*process, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &process{logs: &logBuffer{}, done: make(chan struct{})}
	out := io.MultiWriter(f, p.logs)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless the process has already exited.
func (p *process) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// wait reports whether the process exited within timeout.
func (p *process) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *process) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM, and SIGKILL if the process is still there after timeout.
func (p *process) stop(timeout time.Duration) {
	p.signal(syscall.SIGCONT) // a paused process would not act on SIGTERM
	p.signal(syscall.SIGTERM)
	if !p.wait(timeout) {
		p.kill()
	}
}

// logBuffer keeps every complete line written to it.
type logBuffer struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (b *logBuffer) Write(data []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, data...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
	}
	return len(data), nil
}

// Lines returns a copy of the complete lines written so far.
func (b *logBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

// find returns the first line for which match is true.
func (b *logBuffer) find(match func(line string) bool) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if match(l) {
			return l, true
		}
	}
	return "", false
}

// tail returns the last n lines joined, for failure messages.
func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// findBinary locates a program: the path in env var envName, else name on PATH,
// else goBin in $(go env GOPATH)/bin.
func findBinary(envName, name, goBin string) (string, error) {
	if p := os.Getenv(envName); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", goBin)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s not found: set %s, put %s on PATH or in $(go env GOPATH)/bin/%s", name, envName, name, goBin)
}
