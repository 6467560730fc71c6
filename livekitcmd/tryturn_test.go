package livekitcmd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jxskiss/base62"
	"github.com/pion/turn/v5"
)

const (
	turnKey    = "APIturntest"
	turnSecret = "turn-secret-0123456789abcdef0123456789"
)

// turnOverTLS starts a TURN server as a LiveKit node with external TLS behind our Caddy looks from
// outside: TLS for name (a certificate from a CA written to the returned file), relays on
// 127.0.0.1, and LiveKit's credential check (livekit-server pkg/service/turn.go, HandleAuth) with
// turnSecret. It returns the address to dial and the CA file.
func turnOverTLS(t *testing.T, name string) (addr, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	auth := func(ra *turn.RequestAttributes) (string, []byte, bool) {
		decoded, err := base62.DecodeString(ra.Username)
		parts := strings.Split(string(decoded), "|")
		if err != nil || len(parts) != 3 || parts[0] != turnKey {
			return "", nil, false
		}
		sum := sha256.Sum256(fmt.Appendf(nil, "%s|%s|%s", turnSecret, parts[1], parts[2]))
		return parts[1], turn.GenerateAuthKey(ra.Username, "livekit", base62.EncodeToString(sum[:])), true
	}
	s, err := turn.NewServer(turn.ServerConfig{Realm: "livekit", AuthHandler: auth, ListenerConfigs: []turn.ListenerConfig{{
		Listener:              ln,
		RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return ln.Addr().String(), caFile
}

// verify's TURN check: a TLS handshake under the TURN name, an allocation with LiveKit's
// credentials, relayed by the node the name belongs to; every other outcome is one problem line.
func TestVerifyTURN(t *testing.T) {
	t.Setenv("NODES", "")
	r := startRedis(t)
	r.register(t, lkNode("ND_a", "10.9.0.1", serving, 0))
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": liveNode(t)})
	addr, ca := turnOverTLS(t, "turn-1.example.com")
	verify := func(t *testing.T, secret string, args ...string) (string, error) {
		t.Helper()
		t.Setenv("LIVEKIT_API_KEY", turnKey)
		t.Setenv("LIVEKIT_API_SECRET", secret)
		out, err := cli(t, append([]string{"verify", "--config", cfg, "--dial", addr}, args...)...)
		if strings.Contains(out, secret) && secret != "" {
			t.Errorf("verify shows the secret:\n%s", out)
		}
		return out, err
	}
	one := func(t *testing.T, out string, err error, want string) {
		t.Helper()
		if got := problems(out); err == nil || len(got) != 1 || !strings.Contains(got[0], want) {
			t.Errorf("problems %q, want one with %q", got, want)
		}
	}

	t.Run("relayed by its node", func(t *testing.T) {
		out, err := verify(t, turnSecret, "--ca-file", ca, "--turn", "turn-1.example.com=127.0.0.1")
		if err != nil || !strings.Contains(out, "TURN over TLS on 1 node(s)") {
			t.Errorf("verify: %v\n%s", err, out)
		}
	})
	t.Run("relayed by another node", func(t *testing.T) {
		out, err := verify(t, turnSecret, "--ca-file", ca, "--turn", "turn-1.example.com=127.0.0.2")
		one(t, out, err, "TURN turn-1.example.com: allocated by the node at 127.0.0.1, not by node 127.0.0.2")
	})
	t.Run("certificate not for the name", func(t *testing.T) {
		out, err := verify(t, turnSecret, "--ca-file", ca, "--turn", "turn-2.example.com=127.0.0.1")
		one(t, out, err, "TURN turn-2.example.com: TLS handshake at "+addr)
	})
	t.Run("CA not trusted", func(t *testing.T) {
		out, err := verify(t, turnSecret, "--turn", "turn-1.example.com=127.0.0.1")
		one(t, out, err, "certificate")
	})
	t.Run("other secret", func(t *testing.T) {
		out, err := verify(t, "another-secret-0123456789abcdef0123456", "--ca-file", ca, "--turn", "turn-1.example.com=127.0.0.1")
		one(t, out, err, "TURN turn-1.example.com: no allocation over TLS at "+addr)
	})
	t.Run("no keys", func(t *testing.T) {
		out, err := verify(t, "", "--ca-file", ca, "--turn", "turn-1.example.com=127.0.0.1")
		one(t, out, err, "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set")
	})
	t.Run("not NAME=IP", func(t *testing.T) {
		out, err := verify(t, turnSecret, "--ca-file", ca, "--turn", "turn-1.example.com")
		one(t, out, err, `--turn "turn-1.example.com": want TURN_NAME=NODE_IP`)
	})
}
