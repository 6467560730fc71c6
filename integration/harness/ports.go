package harness

import (
	"net"
	"strconv"
	"testing"
)

// FreePort returns a TCP port that is free on every address at the moment of
// the call (the listener is closed again before it returns).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:PORT" with a free port, for a listener of a test
// (a Caddy site, an admin endpoint).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
