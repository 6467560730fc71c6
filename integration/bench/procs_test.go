package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// caddyPID finds the process of a harness Caddy, which does not expose it:
// a child of this test process whose config file sets c's admin address.
func caddyPID(t testing.TB, c *harness.Caddy) int {
	t.Helper()
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != self {
			continue
		}
		args, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(args), "\x00"), "\x00")
		for i, a := range argv {
			if a != "--config" || i+1 >= len(argv) {
				continue
			}
			cfg, err := os.ReadFile(argv[i+1])
			if err == nil && strings.Contains(string(cfg), "admin "+c.AdminAddr()) {
				return pid
			}
		}
	}
	t.Fatalf("no Caddy process with admin %s among the children of %d", c.AdminAddr(), self)
	return 0
}

// parentOf returns the parent pid of pid, or -1.
func parentOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces and parentheses
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:]) // state ppid ...
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

// memory is a process's resident memory from /proc/PID/status, in KiB.
type memory struct{ rss, hwm int }

func memoryOf(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		switch k {
		case "VmRSS":
			m.rss = n
		case "VmHWM":
			m.hwm = n
		}
	}
	return m, nil
}

var caddyBin string

// caddyBinary is the harness's Caddy binary (CADDY_BIN, else ./cmd/caddy as
// the harness builds it), for the Caddy processes this package starts itself.
func caddyBinary(t testing.TB) string {
	t.Helper()
	if caddyBin != "" {
		return caddyBin
	}
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		caddyBin = bin
		return bin
	}
	c := harness.StartCaddy(t, "http://"+harness.FreeAddr(t)+" {\n\trespond ok\n}\n")
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", caddyPID(t, c)))
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	caddyBin = exe
	return exe
}

// ownCaddy is a Caddy process started by this package, so that its start
// can be timed to the first routed request.
type ownCaddy struct {
	cmd   *exec.Cmd
	admin string
	log   string
	done  chan struct{}
}

// startOwnCaddy runs `caddy run` with caddyfile (which must set admin to
// admin) and returns at once; it is killed when the test ends.
func startOwnCaddy(t testing.TB, admin, caddyfile string) *ownCaddy {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &ownCaddy{admin: admin, log: filepath.Join(dir, "caddy.log"), done: make(chan struct{})}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(caddyBinary(t), "run", "--adapter", "caddyfile", "--config", cfg)
	c.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); logf.Close(); close(c.done) }()
	t.Cleanup(c.kill)
	return c
}

func (c *ownCaddy) pid() int { return c.cmd.Process.Pid }

func (c *ownCaddy) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *ownCaddy) kill() {
	if !c.exited() {
		c.cmd.Process.Kill()
	}
	<-c.done
}

// logTail is the end of the Caddy log, for failure messages.
func (c *ownCaddy) logTail() string {
	data, _ := os.ReadFile(c.log)
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}

var adminClient = &http.Client{Timeout: 30 * time.Second}

// goHeap forces a GC in the Caddy at admin (pprof's heap?gc=1) and returns
// its live heap and the memory the Go runtime holds from the OS, in KiB.
func goHeap(admin string) (heap, sys int, err error) {
	if resp, err := adminClient.Get("http://" + admin + "/debug/pprof/heap?gc=1"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	m, err := memstats(admin)
	if err != nil {
		return 0, 0, err
	}
	return int(m.HeapAlloc >> 10), int(m.Sys >> 10), nil
}

// memstats reads the Go runtime's memstats of the Caddy at admin (expvar).
func memstats(admin string) (runtime.MemStats, error) {
	var v struct {
		Memstats runtime.MemStats `json:"memstats"`
	}
	resp, err := adminClient.Get("http://" + admin + "/debug/vars")
	if err != nil {
		return v.Memstats, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v.Memstats, err
}

// cpuProfile fetches a CPU profile of seconds from the Caddy at admin into
// path; it blocks for that long.
func cpuProfile(admin string, seconds int, path string) error {
	resp, err := adminClient.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: HTTP %d: %s", resp.StatusCode, buf.String())
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// cpuTime is the CPU time that process pid has used so far, summed over its
// threads (nanosecond schedstat; clock ticks of /proc/PID/stat otherwise).
func cpuTime(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum time.Duration
	ok := false
	for _, p := range tasks {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			continue
		}
		if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			sum += time.Duration(ns)
			ok = true
		}
	}
	if ok && sum > 0 {
		return sum
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // state ppid ... utime(12) stime(13)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// profileUnder takes a CPU profile of seconds from the Caddy at admin into
// path while calling work over and over (nil: idle), and says where it is.
func profileUnder(t testing.TB, admin string, seconds int, path string, work func()) {
	errc := make(chan error, 1)
	go func() { errc <- cpuProfile(admin, seconds, path) }()
	var err error
	if work == nil {
		err = <-errc
	} else {
	loop:
		for {
			work()
			select {
			case err = <-errc:
				break loop
			default:
			}
		}
	}
	if err != nil {
		t.Errorf("CPU profile %s: %v", path, err)
		return
	}
	fmt.Printf("CPU profile of Caddy: %s (go tool pprof -top %s)\n", path, path)
}

// allocs returns how many bytes and objects the Caddy at admin has
// allocated since it started (Go's memstats TotalAlloc and Mallocs).
func allocs(admin string) (bytes, objects uint64, err error) {
	m, err := memstats(admin)
	return m.TotalAlloc, m.Mallocs, err
}

// saveURL writes what GET url answers into path.
func saveURL(url, path string) error {
	resp, err := adminClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return os.WriteFile(path, data, 0o644)
}
