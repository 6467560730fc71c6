package cluster

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// A node is out after probeFall consecutive failed probes (at once when the
// connection is refused: nothing listens), and back after probeRise
// consecutive answers. One slow answer is not a death: moving a live
// node's rooms would split them.
const (
	probeFall = 2
	probeRise = 2
)

// prober checks every node's HTTP port on an interval. Any HTTP answer counts
// as alive: LiveKit's `GET /` says 406 when the node has only lost Redis
// (livekit#4663), which is no reason to route around it.
//
// The prober owns each node's liveness: its probe results, and the failed
// dials the request path reports (markDown).
type prober struct {
	interval     time.Duration // <= 0: no probe loop; a failed dial decides
	failDuration time.Duration
	client       *http.Client
	nodes        func() *snapshot
	log          *zap.Logger
	obs          Observer
}

func newProber(cfg Config, nodes func() *snapshot, log *zap.Logger, obs Observer) *prober {
	interval, idle := cfg.ProbeInterval, 10*cfg.ProbeInterval
	if interval <= 0 { // one-off probes (caddy livekit status)
		interval, idle = -1, 10*time.Second
	}
	return &prober{
		interval: interval, failDuration: cfg.FailDuration, nodes: nodes, log: log, obs: obs,
		client: &http.Client{
			Timeout: cfg.ProbeTimeout,
			Transport: &http.Transport{
				Proxy:               nil, // node addresses are dialled directly
				MaxIdleConnsPerHost: 1,
				IdleConnTimeout:     idle,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (p *prober) active() bool { return p.interval > 0 }

func (p *prober) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.probeAll(ctx)
	}
}

// maxProbing bounds the probes in flight: `nodes` may hold thousands of
// entries (long-dead nodes, or junk anyone with Redis access wrote).
const maxProbing = 64

// probeAll probes every node that could be routed to (dialable, and alive
// by LiveKit's rule: an entry with stale stats is out without a probe);
// a round lasts about one probe timeout for every maxProbing nodes.
func (p *prober) probeAll(ctx context.Context) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxProbing)
	for _, n := range p.nodes().nodes {
		if n.Dial == "" || !n.Alive() {
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			p.probed(n, p.probe(ctx, n.Dial))
		}()
	}
	wg.Wait()
}

func (p *prober) probe(ctx context.Context, dial string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+dial+"/", nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return resp.Body.Close()
}

// probed records one probe result and logs a change of state once.
func (p *prober) probed(n *Node, err error) {
	h := n.health
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return // shutting down
		}
		h.oks.Store(0)
		fails := h.fails.Add(1)
		if fails < probeFall && !errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if !h.failed.Swap(true) {
			p.obs.NodeTransition(false)
			p.log.Warn("livekit node not answering; out of rotation",
				zap.String("node", n.ID), zap.String("dial", n.Dial), zap.Error(err))
		}
		if !h.silent.Swap(true) {
			p.endSessions(n)
		}
		return
	}
	h.fails.Store(0)
	if h.oks.Add(1) >= probeRise && h.failed.Load() {
		h.downUntil.Store(0)
		h.silent.Store(false)
		if h.failed.Swap(false) {
			p.obs.NodeTransition(true)
			p.log.Info("livekit node answering again; back in rotation", zap.String("node", n.ID), zap.String("dial", n.Dial))
		}
	}
}

// markDown takes a node out of rotation after the proxy failed to reach it:
// until the probes see it answer again, or for failDuration without probes.
func (p *prober) markDown(n *Node, now time.Time) {
	until := now.Add(p.failDuration).UnixNano()
	wasDown := n.Down(now)
	n.health.downUntil.Store(until)
	if p.active() {
		n.health.oks.Store(0)
		n.health.failed.Store(true)
	}
	if !wasDown {
		p.obs.NodeTransition(false)
		p.log.Warn("livekit node unreachable; out of rotation",
			zap.String("node", n.ID), zap.String("dial", n.Dial), zap.Duration("for", p.failDuration))
		if !p.active() { // no probes to confirm the death: the failed dial decides
			p.endSessions(n)
		}
	}
}

// endSessions ends the sessions of a node just declared dead (see Session):
// its participants reconnect now, through the proxy, to the room's new node.
func (p *prober) endSessions(n *Node) {
	closed, abandoned := n.health.sessions.endAll()
	if closed+abandoned == 0 {
		return
	}
	p.obs.SessionsClosed(closed)
	p.log.Warn("ended the sessions of a dead livekit node", zap.String("node", n.ID), zap.String("dial", n.Dial),
		zap.Int("closed", closed), zap.Int("in_flight", abandoned))
}
