package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// Environment variables that choose the network the tests run in.
const (
	// EnvIsolated is set to 1 in the copy of the test binary that Main runs in
	// a private network namespace.
	EnvIsolated = "LKLB_NETNS"
	// EnvHostNetwork=1 makes Main run the tests in the host's network instead.
	// WebRTC then also uses the host's non-loopback addresses (traffic that stays
	// on the machine, plus multicast group joins on its interfaces).
	EnvHostNetwork = "LKLB_HOST_NETWORK"
)

// Main runs a package's tests; call it from TestMain:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// It re-runs the test binary in a private network namespace that has only a
// loopback interface, so that every process of a test (Redis, LiveKit, Caddy,
// the WebRTC clients) can reach only 127.0.0.0/8, and 127.0.0.N:7880 is free
// for every node. It needs root, or unprivileged user namespaces.
func Main(m *testing.M) {
	switch {
	case isolated():
		if err := ipCommand("link", "set", "lo", "up"); err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			os.Exit(1)
		}
	case os.Getenv(EnvHostNetwork) == "1":
	default:
		os.Exit(runIsolated())
	}
	code := m.Run()
	removeCaddyBuild()
	os.Exit(code)
}

func isolated() bool { return os.Getenv(EnvIsolated) == "1" }

// runIsolated runs this test binary again, with the same arguments, in a new
// network namespace, and returns its exit code.
func runIsolated() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		return 1
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), EnvIsolated+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if uid, gid := os.Geteuid(), os.Getegid(); uid != 0 {
		// Not root: become root of a new user namespace, which may own the new
		// network namespace.
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "harness: cannot run the tests in a private network namespace: %v\n"+
			"(run as root, or set %s=1 to use the host's network)\n", err, EnvHostNetwork)
		return 1
	}
	// Pass on interrupts, and SIGQUIT from go test's timeout (a goroutine dump).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr) && exitErr.ExitCode() > 0:
		return exitErr.ExitCode()
	default:
		fmt.Fprintln(os.Stderr, "harness: test binary:", err)
		return 1
	}
}

// addLoopbackAddr puts ip on the loopback interface of the private namespace,
// so that a node's WebRTC stack finds it and binds its ICE ports to it. Every
// test of a package starts its nodes on the same IPs, so the address may be
// there already: `replace` is idempotent (`add` fails with "File exists" or,
// with iproute2 6.x, "Address already assigned").
func addLoopbackAddr(ip string) error {
	return ipCommand("addr", "replace", ip+"/32", "dev", "lo")
}

// ipCommand runs iproute2's ip.
func ipCommand(args ...string) error {
	bin, err := exec.LookPath("ip")
	if err != nil {
		for _, p := range []string{"/usr/sbin/ip", "/sbin/ip"} {
			if _, statErr := os.Stat(p); statErr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("iproute2's ip is needed to set up the test network: %w", err)
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
