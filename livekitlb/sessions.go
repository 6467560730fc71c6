package livekitlb

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// A session is one request the proxy is passing to a node, from the
// moment a node is chosen until reverse_proxy returns: for a signal
// WebSocket, as long as the participant stays. When the probes declare the
// node dead, its sessions end at once instead of waiting for LiveKit's
// 15 s ping timeout (a frozen or cut-off node keeps its TCP connections
// open and answers nothing):
//   - a session whose response has begun is closed: cancelling the request's
//     context makes reverse_proxy close the backend connection, and with it
//     the client's WebSocket, so the SDK reconnects now;
//   - a session still waiting for the node's answer is abandoned before the
//     client sees anything, and the handler sends the request again to the
//     room's new node (see Handler.ServeHTTP).
type session struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	on        *sessionSet // the node's set while bound
	ended     bool        // the node it was bound to was declared dead
	committed bool        // a response header went to the client
}

func newSession(parent context.Context) *session {
	ctx, cancel := context.WithCancel(parent)
	return &session{ctx: ctx, cancel: cancel}
}

// bind attaches s to n's sessions; a node already down ends it at once, so
// that a death between choosing the node and binding is not missed.
func (s *session) bind(n *Node) {
	if n == nil {
		return
	}
	set := &n.health.sessions
	set.mu.Lock()
	defer set.mu.Unlock()
	if n.down(time.Now()) {
		s.end()
		return
	}
	if set.m == nil {
		set.m = map[*session]struct{}{}
	}
	set.m[s] = struct{}{}
	s.mu.Lock()
	s.on = set
	s.mu.Unlock()
}

// unbind detaches s from its node, before a retry moves it elsewhere or
// when the request is over.
func (s *session) unbind() {
	s.mu.Lock()
	set := s.on
	s.on = nil
	s.mu.Unlock()
	if set == nil {
		return
	}
	set.mu.Lock()
	delete(set.m, s)
	set.mu.Unlock()
}

// end is called with the node's set locked: the node is dead.
func (s *session) end() {
	s.mu.Lock()
	s.ended, s.on = true, nil
	s.mu.Unlock()
	s.cancel()
}

// release ends the session's bookkeeping when reverse_proxy has returned,
// and reports whether the request was abandoned: its node died before any
// response reached the client, so it may be sent to another node.
func (s *session) release() (abandoned bool) {
	s.unbind()
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended && !s.committed
}

// wasCommitted reports whether any of the response went to the client.
func (s *session) wasCommitted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

// commit reports whether a response may go to the client: not once the
// request has been abandoned.
func (s *session) commit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended && !s.committed {
		return false
	}
	s.committed = true
	return true
}

// sessionSet is a node's live sessions; it lives in nodeHealth, which
// outlives the snapshots.
type sessionSet struct {
	mu sync.Mutex
	m  map[*session]struct{}
}

// endAll ends every session of a node declared dead and returns how many
// were closed after their response began and how many were abandoned.
func (set *sessionSet) endAll() (closed, abandoned int) {
	set.mu.Lock()
	defer set.mu.Unlock()
	for s := range set.m {
		s.mu.Lock()
		if s.committed {
			closed++
		} else {
			abandoned++
		}
		s.mu.Unlock()
		s.end()
	}
	clear(set.m)
	return closed, abandoned
}

func (set *sessionSet) count() int {
	set.mu.Lock()
	defer set.mu.Unlock()
	return len(set.m)
}

// sessionWriter passes a response to the client unless its session was
// abandoned first: then reverse_proxy's answer to the cancelled request
// (499) is dropped, and the handler sends the request elsewhere.
type sessionWriter struct {
	http.ResponseWriter
	s *session
}

func (w *sessionWriter) WriteHeader(code int) {
	if w.s.commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	if !w.s.commit() {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Hijack takes the client's connection for a WebSocket, unless the session
// was abandoned while the node's 101 was on its way.
func (w *sessionWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.s.commit() {
		return nil, nil, errAbandoned
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// FlushError flushes a committed response.
func (w *sessionWriter) FlushError() error {
	if !w.s.commit() {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the rest (deadlines) beneath.
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var errAbandoned = errors.New("livekit_lb: the node died before it answered; the request goes to another node")
