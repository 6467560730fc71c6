package harness

import (
	"fmt"
	"strings"
)

// LB is the livekit_lb configuration of a test: where LiveKit's Redis is and
// the options beyond the ones every test sets (allow_networks 127.0.0.0/8
// and the nodes' key, LBKeys).
type LB struct {
	// Redis is the address of LiveKit's Redis, given on the livekit_lb line.
	Redis string
	// RedisBlock, if set instead, is the body of a `redis { }` block
	// (address, sentinel_master_name, ...).
	RedisBlock []string
	// Options are more lines of the block: load_measure rooms, verify off,
	// fail_duration 5s, node_port ...
	Options []string
}

// lines are the block's lines after the Redis setting.
func (lb LB) lines() []string {
	return append(append([]string{"allow_networks 127.0.0.0/8"}, LBKeys...), lb.Options...)
}

// redisBlock is the `redis { }` block, or nil.
func (lb LB) redisBlock() []string {
	if len(lb.RedisBlock) == 0 {
		return nil
	}
	return append(append([]string{"redis {"}, indent(lb.RedisBlock)...), "}")
}

// Handler is the livekit_lb directive.
func (lb LB) Handler() []string {
	head := "livekit_lb {"
	if lb.Redis != "" {
		head = "livekit_lb " + lb.Redis + " {"
	}
	return directive(head, append(lb.redisBlock(), lb.lines()...))
}

// LBSite is a site at http://addr whose requests go to livekit_lb; pre are
// lines of the site before it (header ...).
func LBSite(addr string, lb LB, pre ...string) string {
	return Site(addr, append(pre, lb.Handler()...)...)
}

// TokenSite is a site at http://addr with the create-room endpoint
// (livekit_token with the cluster settings of lb, then tokenOptions) at
// /api/create-room and livekit_lb for every other request. Both name Redis
// with a `redis ADDR` line of their block.
func TokenSite(addr string, lb LB, tokenOptions ...string) string {
	cluster := lb.redisBlock()
	if lb.Redis != "" {
		cluster = []string{"redis " + lb.Redis}
	}
	token := append(append(cluster, lb.lines()...), tokenOptions...)
	lbLines := append(cluster[:len(cluster):len(cluster)], lb.lines()...)
	return Site(addr, append(
		directive("handle /api/create-room {", directive("livekit_token {", token)),
		directive("handle {", directive("livekit_lb {", lbLines))...)...)
}

// StockSite is a site at http://addr with stock reverse_proxy over
// upstreams (HOST:PORT), options in its block.
func StockSite(addr string, upstreams []string, options ...string) string {
	return Site(addr, directive("reverse_proxy "+strings.Join(upstreams, " ")+" {", options)...)
}

// Upstreams are the nodes' HTTP addresses, for StockSite.
func Upstreams(nodes []*Node) []string {
	var ups []string
	for _, n := range nodes {
		ups = append(ups, n.HTTPAddr())
	}
	return ups
}

// Site is a site block at http://addr with lines.
func Site(addr string, lines ...string) string {
	return strings.Join(directive(fmt.Sprintf("http://%s {", addr), lines), "\n") + "\n"
}

// Global is a global options block with lines (the harness adds admin).
func Global(lines ...string) string {
	return strings.Join(directive("{", lines), "\n") + "\n"
}

func directive(head string, body []string) []string {
	return append(append([]string{head}, indent(body)...), "}")
}

func indent(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = "\t" + l
	}
	return out
}
