package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
