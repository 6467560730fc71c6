package harness

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Caddy is a Caddy process with the plugin, run from a Caddyfile.
type Caddy struct {
	t          testing.TB
	bin        string
	dir        string
	adminAddr  string
	configPath string
	proc       *process
}

// StartCaddy runs `caddy run` with caddyfile and waits until its admin endpoint
// and every HTTP server it configured accept connections. The harness adds
// `admin 127.0.0.1:PORT` to the global options, so caddyfile must not set admin.
// The binary is CADDY_BIN, else ./cmd/caddy of the repository built once per
// test process. Caddy is killed when the test ends.
func StartCaddy(t testing.TB, caddyfile string) *Caddy {
	t.Helper()
	c := LaunchCaddy(t, caddyfile)
	c.WaitReady()
	return c
}

// LaunchCaddy is StartCaddy that returns at once, without waiting for
// Caddy to be ready (WaitReady), for a test that times Caddy's start.
func LaunchCaddy(t testing.TB, caddyfile string) *Caddy {
	t.Helper()
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := &Caddy{t: t, bin: bin, dir: t.TempDir(), adminAddr: FreeAddr(t)}
	c.configPath = filepath.Join(c.dir, "Caddyfile")
	c.writeConfig(caddyfile)
	env := []string{ // keep autosave.json and certificates out of $HOME
		"HOME=" + c.dir, "XDG_CONFIG_HOME=" + c.dir, "XDG_DATA_HOME=" + c.dir,
	}
	args := []string{"run", "--adapter", "caddyfile", "--config", c.configPath}
	c.proc, err = startProcess(bin, args, env, filepath.Join(c.dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.proc.kill()
		if t.Failed() {
			t.Logf("caddy log (last lines):\n%s", c.LogTail(30))
		}
	})
	return c
}

// AdminAddr is the admin endpoint, "127.0.0.1:PORT".
func (c *Caddy) AdminAddr() string { return c.adminAddr }

// Reload loads caddyfile into the running Caddy (`caddy reload --force`).
func (c *Caddy) Reload(caddyfile string) error {
	c.writeConfig(caddyfile)
	out, err := exec.Command(c.bin, "reload", "--force", "--adapter", "caddyfile",
		"--config", c.configPath, "--address", c.adminAddr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("caddy reload: %v: %s", err, out)
	}
	return nil
}

// Stop shuts Caddy down gracefully (SIGTERM, SIGKILL after 10 s).
func (c *Caddy) Stop() { c.proc.stop(10 * time.Second) }

// Kill kills Caddy (SIGKILL) and waits for it to exit.
func (c *Caddy) Kill() { c.proc.kill() }

// Exited reports whether the Caddy process has exited.
func (c *Caddy) Exited() bool { return c.proc.exited() }

// PID is the process ID of Caddy.
func (c *Caddy) PID() int { return c.proc.cmd.Process.Pid }

// Logs returns what Caddy has logged so far (JSON lines).
func (c *Caddy) Logs() string { return strings.Join(c.proc.logs.Lines(), "\n") }

// LogTail returns the last n lines Caddy logged, for failure messages.
func (c *Caddy) LogTail(n int) string { return tail(c.proc.logs.Lines(), n) }

func (c *Caddy) writeConfig(caddyfile string) {
	c.t.Helper()
	if err := os.WriteFile(c.configPath, []byte(withAdmin(caddyfile, c.adminAddr)), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// withAdmin puts `admin ADDR` into the global options block of caddyfile,
// adding the block if there is none.
func withAdmin(caddyfile, addr string) string {
	lines := strings.Split(caddyfile, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if l == "{" { // the global options block
			lines[i] += "\n\tadmin " + addr
			return strings.Join(lines, "\n")
		}
		break
	}
	return "{\n\tadmin " + addr + "\n}\n" + caddyfile
}

// WaitReady waits for the admin endpoint, then dials every listen address of
// the configured HTTP servers; it fails the test if Caddy is not ready in 15 s.
func (c *Caddy) WaitReady() {
	c.t.Helper()
	var listen []string
	ok := Poll(15*time.Second, func() bool {
		if c.proc.exited() {
			return true
		}
		resp, err := http.Get("http://" + c.adminAddr + "/config/apps/http/servers")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var servers map[string]struct {
			Listen []string `json:"listen"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&servers) != nil {
			return false
		}
		listen = listen[:0]
		for _, s := range servers {
			listen = append(listen, s.Listen...)
		}
		for _, addr := range listen {
			conn, err := net.DialTimeout("tcp", dialAddr(addr), time.Second)
			if err != nil {
				return false
			}
			conn.Close()
		}
		return true
	})
	if !ok || c.proc.exited() {
		c.t.Fatalf("caddy not ready (exited %v, listen %v):\n%s", c.proc.exited(), listen, c.LogTail(30))
	}
}

// dialAddr turns a Caddy listen address (":8080", "127.0.0.1:8080",
// "tcp/127.0.0.1:8080") into one to dial.
func dialAddr(listen string) string {
	if i := strings.Index(listen, "/"); i >= 0 {
		listen = listen[i+1:]
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

var caddyBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// caddyBinary returns CADDY_BIN, or builds ./cmd/caddy of the repository (the
// parent of integration/) once per test process.
func caddyBinary() (string, error) {
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		return bin, nil
	}
	caddyBuild.once.Do(func() {
		_, file, _, _ := runtime.Caller(0) // .../integration/harness/caddy.go
		root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		caddyBuild.dir, caddyBuild.err = os.MkdirTemp("", "caddy-livekit-it-")
		if caddyBuild.err != nil {
			return
		}
		caddyBuild.bin = filepath.Join(caddyBuild.dir, "caddy")
		cmd := exec.Command("go", "build", "-o", caddyBuild.bin, "./cmd/caddy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			caddyBuild.err = fmt.Errorf("go build ./cmd/caddy in %s: %v\n%s"+
				"(inside the test network namespace the module proxy is out of reach: "+
				"run `go mod download` in %s first, or set CADDY_BIN)", root, err, out, root)
		}
	})
	return caddyBuild.bin, caddyBuild.err
}

// removeCaddyBuild deletes the binary that caddyBinary built, if any.
func removeCaddyBuild() {
	if caddyBuild.dir != "" {
		os.RemoveAll(caddyBuild.dir)
	}
}

// CaddyBinary is the Caddy under test (CADDY_BIN or a build of ./cmd/caddy),
// for tests that run its commands.
func CaddyBinary(t testing.TB) string {
	t.Helper()
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
