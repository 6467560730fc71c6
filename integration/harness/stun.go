package harness

import (
	"net"
	"testing"

	"github.com/pion/stun/v3"
)

// startSTUN runs a minimal STUN server on 127.0.0.1 and returns its address.
//
// The nodes hand it to clients as their only ICE server. That keeps LiveKit from
// handing out its default public STUN servers, and it gives the client (whose
// WebRTC stack never gathers loopback host candidates) a server-reflexive
// candidate on 127.0.0.1, so media flows over loopback only.
func startSTUN(t testing.TB) string {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("stun listen: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			addr := from.(*net.UDPAddr)
			resp, err := stun.Build(
				stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: addr.IP, Port: addr.Port}, stun.Fingerprint,
			)
			if err == nil {
				_, _ = conn.WriteTo(resp.Raw, from)
			}
		}
	}()
	return conn.LocalAddr().String()
}
