package livekitcmd

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jxskiss/base62"
	"github.com/pion/turn/v5"
)

// tryTURN is verify's check of a node's TURN over TLS (TURN=on): a TLS handshake on 443 under the
// node's TURN name, whose certificate must be valid for it, then a TURN allocation over that
// connection, with credentials made as LiveKit makes a participant's. The allocation's relayed
// address is the node_ip of the LiveKit node whose TURN server made it: it must be the node the
// name belongs to.
type tryTURN struct {
	apiKey, apiSecret string
	dial              string // host:port every connection goes to ("": the name, port 443)
	roots             *x509.CertPool
}

func newTryTURN(apiKey, apiSecret, dial, caFile string) (*tryTURN, error) {
	if dial != "" {
		if _, _, err := net.SplitHostPort(dial); err != nil {
			return nil, fmt.Errorf("--dial %q: want host:port", dial)
		}
	}
	roots, err := loadCAs(caFile)
	if err != nil {
		return nil, err
	}
	return &tryTURN{apiKey: apiKey, apiSecret: apiSecret, dial: dial, roots: roots}, nil
}

// check checks spec, "NAME=NODE_IP"; it returns the problem, or "".
func (t *tryTURN) check(ctx context.Context, spec string) string {
	name, nodeIP, ok := strings.Cut(spec, "=")
	if !ok || name == "" || net.ParseIP(nodeIP) == nil {
		return fmt.Sprintf("--turn %q: want TURN_NAME=NODE_IP", spec)
	}
	if t.apiKey == "" || t.apiSecret == "" {
		return "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set: the TURN check makes credentials as the nodes do"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr := t.dial
	if addr == "" {
		addr = net.JoinHostPort(name, "443")
	}
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: &tls.Config{ServerName: name, RootCAs: t.roots, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Sprintf("TURN %s: TLS handshake at %s: %v", name, addr, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	user, pass := t.credentials("PA_deploy_verify", time.Now().Add(time.Minute))
	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: conn.RemoteAddr().String(), // the connection's far end: it carries every message
		Conn:           turn.NewSTUNConn(conn),
		Username:       user, Password: pass, Realm: "livekit",
	})
	if err != nil {
		return fmt.Sprintf("TURN %s: %v", name, err)
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		return fmt.Sprintf("TURN %s: %v", name, err)
	}
	relay, err := client.AllocateWithContext(ctx)
	if err != nil {
		return fmt.Sprintf("TURN %s: no allocation over TLS at %s: %v", name, addr, err)
	}
	defer relay.Close()
	host, _, _ := net.SplitHostPort(relay.LocalAddr().String())
	if !net.ParseIP(host).Equal(net.ParseIP(nodeIP)) {
		return fmt.Sprintf("TURN %s: allocated by the node at %s, not by node %s (its TURN name leads elsewhere)", name, host, nodeIP)
	}
	return ""
}

// credentials are a participant's TURN username and password as LiveKit makes them
// (livekit-server pkg/service/turn.go, TURNAuthHandler): the username names the API key, the
// participant and the expiry; the password is derived from the key's secret.
func (t *tryTURN) credentials(participant string, expiry time.Time) (user, pass string) {
	user = base62.EncodeToString(fmt.Appendf(nil, "%s|%s|%d", t.apiKey, participant, expiry.Unix()))
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%s|%d", t.apiSecret, participant, expiry.Unix()))
	return user, base62.EncodeToString(sum[:])
}
