package livekitlb

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
type prober struct {
	interval time.Duration
	client   *http.Client
}

func newProber(interval, timeout time.Duration) *prober {
	return &prober{
		interval: interval,
		client: &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				Proxy:               nil, // node addresses are dialled directly
				MaxIdleConnsPerHost: 1,
				IdleConnTimeout:     10 * interval,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (r *Registry) probeLoop(ctx context.Context) {
	t := time.NewTicker(r.prober.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.probeAll(ctx, r.prober)
	}
}

// maxProbing bounds the probes in flight: `nodes` may hold thousands of
// entries (long-dead nodes, or junk anyone with Redis access wrote).
const maxProbing = 64

// probeAll probes every node that could be routed to (dialable, and alive
// by LiveKit's rule: an entry with stale stats is out without a probe);
// a round lasts about one probe timeout for every maxProbing nodes.
func (r *Registry) probeAll(ctx context.Context, p *prober) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxProbing)
	for _, n := range r.snap.Load().nodes {
		if n.Dial == "" || !n.alive() {
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			r.probed(n, p.probe(ctx, n.Dial))
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
func (r *Registry) probed(n *Node, err error) {
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
			metrics.transitions.WithLabelValues("down").Inc()
			r.log.Warn("livekit node not answering; out of rotation",
				zap.String("node", n.ID), zap.String("dial", n.Dial), zap.Error(err))
		}
		if !h.silent.Swap(true) {
			r.endSessions(n)
		}
		return
	}
	h.fails.Store(0)
	if h.oks.Add(1) >= probeRise && h.failed.Load() {
		h.downUntil.Store(0)
		h.silent.Store(false)
		if h.failed.Swap(false) {
			metrics.transitions.WithLabelValues("up").Inc()
			r.log.Info("livekit node answering again; back in rotation", zap.String("node", n.ID), zap.String("dial", n.Dial))
		}
	}
}
