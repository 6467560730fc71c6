package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

// defaultAllowNetworks: addresses read from Redis are dialled only inside
// these unless the operator says otherwise, so a poisoned `nodes` entry
// cannot turn the proxy against an arbitrary host.
var defaultAllowNetworks = []string{
	"127.0.0.0/8", "::1/128", // loopback
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", // RFC 1918
	"100.64.0.0/10", // carrier-grade NAT, common for VPN meshes
	"fc00::/7",      // IPv6 unique local
}

// ExpandNetworks splits entries that hold several networks and replaces
// "private" by the defaults. Nothing left (an empty placeholder) is nil: the
// defaults.
func ExpandNetworks(in []string) []string {
	var out []string
	for _, s := range in {
		for _, n := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			if n == "private" {
				out = append(out, defaultAllowNetworks...)
			} else {
				out = append(out, n)
			}
		}
	}
	return out
}

// addressBook turns a node's advertised IP into the address to dial.
type addressBook struct {
	port  int
	byIP  map[string]string // advertised IP -> host:port, set by the operator
	allow []netip.Prefix
}

func newAddressBook(port int, byIP map[string]string, allow []string) (*addressBook, error) {
	b := &addressBook{port: port, byIP: byIP}
	for ip, dial := range byIP {
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("node_addresses: %q is not an IP address", ip)
		}
		if _, _, err := net.SplitHostPort(dial); err != nil {
			return nil, fmt.Errorf("node_addresses: %q for %s is not host:port", dial, ip)
		}
	}
	for _, s := range allow {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("allow_networks: %q is neither a CIDR nor an IP", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		b.allow = append(b.allow, p.Masked())
	}
	return b, nil
}

// dial returns the address for a node's advertised IP, or a reason why it
// must not be dialled. Operator-mapped addresses are trusted as written.
func (b *addressBook) dial(ip string) (string, error) {
	if d, ok := b.byIP[ip]; ok {
		return d, nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "", fmt.Errorf("node advertises %s, which is not an IP address", Quote(ip))
	}
	a = a.Unmap()
	if !b.allowed(a) {
		if len(b.byIP) > 0 || !a.IsPrivate() {
			// a public address: LiveKit's node_ip behind 1:1 NAT, which the
			// proxy must not dial; it dials the private address mapped to it
			return "", fmt.Errorf("node address %s is outside allow_networks and has no node_addresses mapping "+
				"(a node behind NAT: map its public address to its private one, %s=<private IP>:%d)", a, a, b.port)
		}
		return "", fmt.Errorf("node address %s is outside allow_networks", a)
	}
	return net.JoinHostPort(a.String(), strconv.Itoa(b.port)), nil
}

func (b *addressBook) allowed(a netip.Addr) bool {
	for _, p := range b.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
