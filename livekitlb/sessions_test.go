package livekitlb

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// fakeNodes stands in for reverse_proxy and the nodes behind it: a node
// named in frozen accepts the request and answers nothing until the
// request is cancelled (then it does what reverse_proxy does: 499); the
// others answer 101 and hold the WebSocket open until cancelled or closed.
type fakeNodes struct {
	mu     sync.Mutex
	frozen map[string]bool
	calls  []string        // node ids, in order
	open   chan string     // a node id when a WebSocket is established
	closed chan struct{}   // close it to end the established WebSockets
	seen   map[string]bool // the request's Test-Mark header on each call
}

func newFakeNodes(frozen ...string) *fakeNodes {
	f := &fakeNodes{frozen: map[string]bool{}, open: make(chan string, 8), closed: make(chan struct{}), seen: map[string]bool{}}
	for _, id := range frozen {
		f.frozen[id] = true
	}
	return f
}

func (f *fakeNodes) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	id := routeFrom(r).node.ID
	f.mu.Lock()
	f.calls = append(f.calls, id)
	frozen := f.frozen[id]
	f.mu.Unlock()
	if frozen {
		<-r.Context().Done()
		w.WriteHeader(499)
		return nil
	}
	w.Header().Set("Upgrade", "websocket")
	w.WriteHeader(http.StatusSwitchingProtocols)
	f.open <- id
	select {
	case <-r.Context().Done():
		return errors.New("backend connection closed")
	case <-f.closed:
		return nil
	}
}

func (f *fakeNodes) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// serveAsync runs the handler in the background; the returned channel
// yields the response once the handler has returned.
func serveAsync(h *Handler, req *http.Request, next caddyhttp.Handler) <-chan *httptest.ResponseRecorder {
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, req, next); err != nil {
			w.Header().Set("Test-Error", err.Error())
		}
		done <- w
	}()
	return done
}

// A join sent to a node that then goes silent is sent again, inside the
// same request, to the room's new node: the client sees one 101.
func TestJoinInFlightFollowsRoomToNewNode(t *testing.T) {
	f, r := twoProbedNodes(t)
	f.Placements["standup"] = "ND_a"
	nodes := newFakeNodes("ND_a")
	defer close(nodes.closed)
	req := httptest.NewRequest("GET", "/rtc?access_token="+mint(t, testKey, testSecret, "standup", time.Hour), nil)
	req.Header.Set("Sec-WebSocket-Key", "k")
	done := serveAsync(testHandler(t, r.Cluster, true), req, nodes)

	waitSessions(t, r.Cluster, "ND_a", 1)
	r.kill(t, "ND_a")
	if id := <-nodes.open; id != "ND_b" {
		t.Fatalf("resent to %s", id)
	}
	if got := nodes.callList(); len(got) != 2 || got[0] != "ND_a" || got[1] != "ND_b" {
		t.Fatalf("calls %v, want ND_a then ND_b", got)
	}
	if f.Room("standup") != "ND_b" {
		t.Fatalf("room_node_map[standup] = %s after its node died", f.Room("standup"))
	}
	waitSessions(t, r.Cluster, "ND_b", 1)
	nodes.closed <- struct{}{}
	w := <-done
	if w.Code != http.StatusSwitchingProtocols || w.Header().Get("Test-Error") != "" {
		t.Fatalf("client saw %d %q", w.Code, w.Header().Get("Test-Error"))
	}
	waitSessions(t, r.Cluster, "ND_b", 0)
}

// An open WebSocket to a node declared dead is closed at once (so the SDK
// reconnects) and is not sent anywhere else; a session of another node
// stays. (One slow probe is no death: cluster's TestOneFailedProbeEndsNoSession.)
func TestDeadNodeClosesItsOpenSessions(t *testing.T) {
	f, r := twoProbedNodes(t)
	f.Placements["on-a"], f.Placements["on-b"] = "ND_a", "ND_b"
	nodes := newFakeNodes()
	join := func(room string) <-chan *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/rtc?access_token="+mint(t, testKey, testSecret, room, time.Hour), nil)
		return serveAsync(testHandler(t, r.Cluster, true), req, nodes)
	}
	onA, onB := join("on-a"), join("on-b")
	<-nodes.open
	<-nodes.open

	r.kill(t, "ND_a")
	select {
	case w := <-onA:
		if w.Code != http.StatusSwitchingProtocols {
			t.Fatalf("closed session's status %d", w.Code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the WebSocket to the dead node stayed open")
	}
	if got := nodes.callList(); len(got) != 2 {
		t.Fatalf("calls %v: an established session was sent again", got)
	}
	waitSessions(t, r.Cluster, "ND_b", 1)
	close(nodes.closed)
	<-onB
}

// A failed dial moves the request but, while the probes still reach the
// node, ends nobody else's session; without probes it is the only sign of
// death, and it does.
func TestFailedDialEndsSessionsOnlyWithoutProbes(t *testing.T) {
	for _, probes := range []bool{true, false} {
		f, r := twoNodes(t)
		if probes {
			var p *probedNodes
			f, p = twoProbedNodes(t)
			r = p.Cluster
		}
		f.Placements["kept"] = "ND_a"
		nodes := newFakeNodes()
		req := httptest.NewRequest("GET", "/rtc?access_token="+mint(t, testKey, testSecret, "kept", time.Hour), nil)
		done := serveAsync(testHandler(t, r, true), req, nodes)
		<-nodes.open

		// another request's dial to ND_a failed: reverse_proxy calls ResetCache
		other := &route{cluster: r, room: "moved", node: node(r, "ND_a"), session: cluster.NewSession(context.Background())}
		other.session.Bind(other.node)
		vars := map[string]any{routeVar: other}
		oreq := httptest.NewRequest("GET", "/rtc", nil)
		oreq = oreq.WithContext(context.WithValue(oreq.Context(), caddyhttp.VarsCtxKey, vars))
		if err := (Upstreams{}).ResetCache(oreq); err != nil {
			t.Fatal(err)
		}
		if other.node == nil || other.node.ID != "ND_b" || other.session.Context().Err() != nil {
			t.Fatalf("probes %v: the retried request was not moved intact to ND_b: %+v", probes, other)
		}
		select {
		case <-done:
			if probes {
				t.Fatal("a failed dial closed a session the probes still vouch for")
			}
		case <-time.After(300 * time.Millisecond):
			if !probes {
				t.Fatal("without probes, a failed dial left the node's sessions open")
			}
			close(nodes.closed)
			<-done
		}
		other.session.Release()
	}
}

// A POST in flight (WHIP, the server API) may have been acted on: it is not
// sent again, the client gets a 502 at once.
func TestPostInFlightIsNotResent(t *testing.T) {
	f, r := twoProbedNodes(t)
	f.Placements["w"] = "ND_a"
	nodes := newFakeNodes("ND_a")
	req := httptest.NewRequest("POST", "/whip/v1", http.NoBody)
	req.Header.Set("Authorization", "Bearer "+mint(t, testKey, testSecret, "w", time.Hour))
	req.ContentLength = 120 // an SDP offer
	done := serveAsync(testHandler(t, r.Cluster, true), req, nodes)
	waitSessions(t, r.Cluster, "ND_a", 1)
	r.kill(t, "ND_a")
	w := <-done
	if w.Code != http.StatusBadGateway {
		t.Fatalf("status %d", w.Code)
	}
	jsonError(t, w)
	if got := nodes.callList(); len(got) != 1 {
		t.Fatalf("calls %v", got)
	}
}
