package harness

import (
	"fmt"
	"os/exec"
	"strings"
)

// Cut drops every packet to and from the node's IP inside the test's
// private network namespace (iptables DROP), as a network partition does:
// connections stay open, nothing arrives, nobody is told. The node's own
// connection to Redis (on 127.0.0.1) is left alone, so LiveKit still thinks
// the node alive: only the proxy, its probes and the clients are cut off.
// Heal undoes it; the test's end heals too.
func (n *Node) Cut() {
	n.t.Helper()
	if err := n.partition("-I"); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { _ = n.partition("-D") })
}

// Heal removes the rules of Cut.
func (n *Node) Heal() {
	n.t.Helper()
	if err := n.partition("-D"); err != nil {
		n.t.Fatal(err)
	}
}

func (n *Node) partition(op string) error {
	if !isolated() {
		return fmt.Errorf("harness: a partition needs the private network namespace (harness.Main without %s)", EnvHostNetwork)
	}
	for _, dir := range []string{"-d", "-s"} {
		if err := iptables(op, "INPUT", dir, n.ip, "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

func iptables(args ...string) error {
	bin, err := exec.LookPath("iptables")
	if err != nil {
		bin = "/usr/sbin/iptables"
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s: %v: %s (scripts/deps.sh installs iptables)", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
