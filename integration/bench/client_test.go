package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// target is one signal connection to make: where to (ws URL with the
// token) and the node that hosts its room.
type target struct {
	url  string
	node string
}

// rtcURL is LiveKit's signal URL at base ("ws://host:port") with token in
// the query, as the JS SDK sends it.
func rtcURL(base, token string) string {
	return base + "/rtc?access_token=" + url.QueryEscape(token)
}

// runResult is what a batch of signal connections measured.
type runResult struct {
	done     int           // completed exchanges
	errs     int           // failed ones
	onNode   int           // completed on the room's node
	elapsed  time.Duration // wall time of the batch
	upgrade  latencies     // dial to 101 Switching Protocols, per completed exchange
	rates    []float64     // exchanges per second of each batch added
	cpu      time.Duration // CPU time the proxy used, when measured
	allocB   uint64        // bytes the proxy allocated, when measured
	allocN   uint64        // objects the proxy allocated, when measured
	cpus     []float64     // proxy CPU seconds per exchange of each batch added, when measured
	firstErr error
}

func (r *runResult) add(o runResult) {
	r.done += o.done
	r.errs += o.errs
	r.onNode += o.onNode
	r.elapsed += o.elapsed
	r.upgrade = append(r.upgrade, o.upgrade...)
	r.rates = append(r.rates, o.rates...)
	r.cpu += o.cpu
	r.allocB += o.allocB
	r.allocN += o.allocN
	r.cpus = append(r.cpus, o.cpus...)
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

// rate is the median of the batches' rates (completed exchanges per second
// of wall time): a burst of load from a neighbour spoils one batch, not
// the figure.
func (r runResult) rate() float64 { return median(r.rates) }

// pairedRatio is the median over batches of r's rate over o's rate in the
// same round: batches run back to back share the machine's state of the
// moment, so their ratio is steadier than a ratio of two medians.
func (r runResult) pairedRatio(o runResult) float64 { return pairedMedian(r.rates, o.rates) }

// pairedCPURatio is the median over batches of r's proxy CPU per exchange
// over o's in the same round.
func (r runResult) pairedCPURatio(o runResult) float64 { return pairedMedian(r.cpus, o.cpus) }

// pairedMedian is the median of a[i]/b[i] over the batches where b[i] > 0.
func pairedMedian(a, b []float64) float64 {
	var ratios []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			ratios = append(ratios, a[i]/b[i])
		}
	}
	return median(ratios)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cpuPer is the proxy's CPU time per completed exchange.
func (r runResult) cpuPer() time.Duration {
	if r.done == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.done)
}

var dialer = &websocket.Dialer{
	NetDialContext:   (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   4096,
	WriteBufferSize:  4096,
}

var echoMessage = []byte("ping from the benchmark client")

// exchange makes one signal connection like a LiveKit client's first
// moments: upgrade, read the first message, send one and read its echo,
// then the server closes. It returns the upgrade latency and the node that
// answered.
func exchange(ctx context.Context, tg target) (time.Duration, string, error) {
	start := time.Now()
	conn, resp, err := dialer.DialContext(ctx, tg.url, nil)
	upgrade := time.Since(start)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return 0, "", err
	}
	defer conn.Close()
	node := resp.Header.Get(nodeHeader)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	mt, msg, err := conn.ReadMessage()
	if err != nil {
		return 0, node, fmt.Errorf("first message: %w", err)
	}
	if mt != websocket.BinaryMessage || !bytes.Equal(msg, joinMessage) {
		return 0, node, fmt.Errorf("first message: type %d, %d bytes", mt, len(msg))
	}
	if err := conn.WriteMessage(websocket.BinaryMessage, echoMessage); err != nil {
		return 0, node, fmt.Errorf("send: %w", err)
	}
	if _, msg, err = conn.ReadMessage(); err != nil || !bytes.Equal(msg, echoMessage) {
		return 0, node, fmt.Errorf("echo: %q, %v", msg, err)
	}
	_, _, err = conn.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		return 0, node, fmt.Errorf("close: %v", err)
	}
	return upgrade, node, nil
}

// runExchanges makes one exchange per target with conc concurrent clients,
// and stops early (counting the rest as not done) once limit has passed.
func runExchanges(ctx context.Context, targets []target, conc int, limit time.Duration) runResult {
	ctx, cancel := context.WithTimeout(ctx, limit+15*time.Second)
	defer cancel()
	deadline := time.Now().Add(limit)
	var next atomic.Int64
	results := make([]runResult, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[w]
			res.upgrade = make(latencies, 0, len(targets)/conc+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(targets) || time.Now().After(deadline) {
					return
				}
				up, node, err := exchange(ctx, targets[i])
				if err != nil {
					res.errs++
					if res.firstErr == nil {
						res.firstErr = fmt.Errorf("%s: %w", targets[i].url[:min(len(targets[i].url), 40)], err)
					}
					continue
				}
				res.done++
				res.upgrade = append(res.upgrade, up)
				if node == targets[i].node {
					res.onNode++
				}
			}
		}()
	}
	wg.Wait()
	var all runResult
	for _, r := range results {
		all.add(r)
	}
	all.elapsed = time.Since(start)
	all.rates = []float64{float64(all.done) / all.elapsed.Seconds()}
	return all
}

// errorf summarises a batch's failures, or nil.
func (r runResult) err() error {
	if r.errs == 0 {
		return nil
	}
	if r.firstErr == nil {
		r.firstErr = errors.New("unknown")
	}
	return fmt.Errorf("%d of %d exchanges failed, first: %w", r.errs, r.errs+r.done, r.firstErr)
}
