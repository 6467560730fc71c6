package compose

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// machines is a deployment over several machines, each a container of its own with its own address
// on one network. deploy.sh runs on each, in the machine's network namespace (nsenter), with the one
// .env that every machine shares; the containers it starts join that namespace
// (HOST_NETWORK=container:<machine>) as they join the host's network on a real machine. The
// machines share this Docker engine, hence a compose project each (COMPOSE_PROJECT_NAME in the
// environment, which wins over .env).
type machines struct {
	t   *testing.T
	env *stack   // the shared .env
	m   []*stack // machine i's compose project
	ips []string
	lan string // the machines' network
	ca  string // CA file clients trust; "": every machine's internal CA (TLS=internal)
}

func newMachines(t *testing.T, n int) *machines {
	t.Helper()
	base := newStack(t, 1)
	ms := &machines{t: t, env: base, lan: base.project + "_lan"}
	if out, err := exec.Command("docker", "network", "create", "--subnet", base.prefix+".0/24", ms.lan).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v %s", err, out)
	}
	var hosts []string
	t.Cleanup(func() { // after every machine's project is gone (cleanups run last first)
		_ = exec.Command("docker", append([]string{"rm", "-f"}, hosts...)...).Run()
		_ = exec.Command("docker", "network", "rm", ms.lan).Run()
	})
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("%s.%d", base.prefix, 11+i)
		host := fmt.Sprintf("%s-host%d", base.project, i+1)
		out, err := exec.Command("docker", "run", "-d", "--name", host, "--hostname", fmt.Sprintf("host%d", i+1),
			"--network", ms.lan, "--ip", ip, env("BASE_IMAGE", "local/debian:bookworm"), "sleep", "infinity").CombinedOutput()
		if err != nil {
			t.Fatalf("machine %s: %v %s", host, err, out)
		}
		hosts = append(hosts, host)
		m := *base
		m.project = fmt.Sprintf("%sm%d", base.project, i+1)
		m.machine = host
		m.env = []string{"COMPOSE_PROJECT_NAME=" + m.project, "HOST_NETWORK=container:" + host}
		ms.m = append(ms.m, &m)
		ms.ips = append(ms.ips, ip)
		t.Cleanup(m.teardown)
	}
	base.set("STUN_SERVERS", ms.ips[0]+":3478") // what clients are told; nothing listens there
	base.set("TLS", "internal")
	base.set("DOMAIN", "livekit.test")
	return ms
}

// setNodes writes the shared .env with the first n machines in NODES.
func (ms *machines) setNodes(n int) {
	ms.env.set("NODES", strings.Join(ms.ips[:n], ","))
	ms.env.writeEnv()
}

// client runs lkclient on the machines' network against https://livekit.test, which resolves to
// machine i, trusting every machine's internal CA (each Caddy has its own).
func (ms *machines) client(i int, args ...string) *client {
	ms.t.Helper()
	return ms.clientOn(ms.lan, ms.ips[i], args...)
}

// trustOpts: the docker run options that make a client trust ms.ca, or every machine's internal CA.
func (ms *machines) trustOpts() []string {
	ms.t.Helper()
	return []string{"-v", ms.caBundle() + ":/etc/lkclient-ca.pem:ro", "-e", "SSL_CERT_FILE=/etc/lkclient-ca.pem"}
}

// caBundle is the CA file clients trust: ms.ca, or every machine's internal CA.
func (ms *machines) caBundle() string {
	ms.t.Helper()
	ca := ms.ca
	if ca == "" {
		var bundle strings.Builder
		for _, m := range ms.m {
			if m.container("caddy") != "" {
				bundle.WriteString(m.dockerExec("caddy", "cat", "/data/caddy/pki/authorities/local/root.crt"))
			}
		}
		ca = filepath.Join(ms.env.dir, "ca-"+randHex(3)+".pem")
		if err := os.WriteFile(ca, []byte(bundle.String()), 0o644); err != nil {
			ms.t.Fatal(err)
		}
	}
	return ca
}

// clientOn runs lkclient on network against https://livekit.test resolved to addr.
func (ms *machines) clientOn(network, addr string, args ...string) *client {
	ms.t.Helper()
	opts := append([]string{"--network", network, "--add-host", "livekit.test:" + addr}, ms.trustOpts()...)
	return ms.m[0].runClient(opts, "https://livekit.test", args...)
}

// wsConnected maps identity -> machines (0-based) whose node logged its WebSocket.
func (ms *machines) wsConnected() map[string][]int {
	out := map[string][]int{}
	for i, m := range ms.m {
		if m.container("livekit") == "" {
			continue
		}
		for id := range m.wsConnected("livekit") {
			out[id] = append(out[id], i)
		}
	}
	return out
}

// roomMachine maps every room of room_node_map to the machine hosting it (-1: none of ours).
func (ms *machines) roomMachine() map[string]int {
	m1 := ms.m[0]
	ids := m1.nodeIDs("caddy") // node ID -> livekitN, N the machine's place in NODES
	out := map[string]int{}
	for room, id := range m1.redisHash("room_node_map") {
		n := 0
		if svc, ok := ids[id]; ok {
			fmt.Sscanf(svc, "livekit%d", &n)
		}
		out[room] = n - 1
	}
	return out
}

// drain drains node (an IP) through machine i's proxy and waits until that running proxy sees it
// drained (its admin API, in the machine's network namespace): the CLI writes Redis, the proxy
// reads it on its next refresh.
func (ms *machines) drain(i int, node string) {
	ms.t.Helper()
	m := ms.m[i]
	m.dockerExec("caddy", "caddy", "livekit", "drain", node, "--config", "/etc/caddy/Caddyfile")
	pid, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", m.machine).Output()
	if err != nil {
		ms.t.Fatal(err)
	}
	var last string
	if !harness.Poll(10*time.Second, func() bool {
		out, _ := exec.Command("nsenter", "--net=/proc/"+strings.TrimSpace(string(pid))+"/ns/net",
			"curl", "-s", "-m", "2", "http://localhost:2019/livekit/nodes").Output()
		last = string(out)
		var v struct {
			Nodes []struct {
				IP      string
				Drained bool
			}
		}
		if json.Unmarshal(out, &v) != nil {
			return false
		}
		for _, n := range v.Nodes {
			if n.IP == node && n.Drained {
				return true
			}
		}
		return false
	}) {
		ms.t.Fatalf("machine %d's proxy does not see %s drained: %s", i+1, node, last)
	}
}

// in runs f as a subtest whose failures every machine's helpers report.
func (ms *machines) in(t *testing.T, name string, f func(t *testing.T)) {
	all := append([]*stack{ms.env}, ms.m...)
	t.Run(name, func(t *testing.T) {
		for _, s := range all {
			s.t = t
		}
		defer func() {
			for _, s := range all {
				s.t = ms.t
			}
		}()
		f(t)
	})
}

// outOfRotation: when, and with what message, the caddy of s first logged the node at dial out of
// rotation after since.
func outOfRotation(s *stack, dial string, since time.Time) (time.Time, string) {
	out, _ := exec.Command("docker", "logs", s.container("caddy")).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		e, ok := harness.ParseLogLine(line)
		if !ok || !e.Has("dial", dial) || !strings.Contains(e.Msg, "out of rotation") {
			continue
		}
		if at := e.Time(); at.After(since) {
			return at, e.Msg
		}
	}
	return time.Time{}, ""
}

func keysOf(m map[string]string) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func containerIDs(s *stack, services ...string) map[string]string {
	m := map[string]string{}
	for _, svc := range services {
		m[svc] = s.container(svc)
	}
	return m
}

// One machine that clients reach from outside: its own address in NODES, host networking, TLS with
// the operator's certificate (TLS=files); a participant publishes and another receives over wss.
func TestOneMachineTLSFiles(t *testing.T) {
	ms := newMachines(t, 1)
	chain, key, ca := makeCertificate(t, ms.env.dir, "livekit.test")
	ms.ca = ca
	ms.env.set("TLS", "files")
	ms.env.set("TLS_CERT_FILE", chain)
	ms.env.set("TLS_KEY_FILE", key)
	ms.setNodes(1)
	m := ms.m[0]
	m.mustDeploySh("deploy")
	t.Logf("deploy.sh verify: %s", strings.TrimSpace(m.mustDeploySh("verify")))
	c := ms.client(0, "pubsub", "-room", "tls-files-pubsub")
	r := c.next(90 * time.Second)
	c.wait(30 * time.Second)
	t.Logf("pubsub: %v", r)
	if r["ok"] != true || !strings.HasPrefix(fmt.Sprint(r["received"]), "alice/") || r["url"] != "wss://livekit.test" {
		t.Fatalf("bob did not receive alice's track over wss://livekit.test: %v", r)
	}
	ws := ms.wsConnected()
	for _, id := range []string{"alice", "bob"} {
		if !reflect.DeepEqual(ws[id], []int{0}) {
			t.Errorf("%s connected on machines %v, want [0]", id, ws[id])
		}
	}
}

// makeCertificate writes a CA, and a certificate for name it signed (chain: leaf then CA) with its
// key, as an operator's own PKI would give them.
func makeCertificate(t *testing.T, dir, name string) (chain, key, ca string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := newKey(), newKey()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test operator CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	chain, key, ca = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem"), filepath.Join(dir, "ca.pem")
	for f, b := range map[string][]byte{
		chain: append(pemOf("CERTIFICATE", leafDER), pemOf("CERTIFICATE", caDER)...),
		key:   pemOf("EC PRIVATE KEY", keyDER),
		ca:    pemOf("CERTIFICATE", caDER),
	} {
		if err := os.WriteFile(f, b, 0o644); err != nil { // read by Caddy in its container
			t.Fatal(err)
		}
	}
	return chain, key, ca
}
