package cluster

import (
	"context"
	"sync"
	"time"
)

// A Session is one request the proxy is passing to a node, from the
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
//     room's new node (see livekitlb's Handler.ServeHTTP).
type Session struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	on        *sessionSet // the node's set while bound
	ended     bool        // the node it was bound to was declared dead
	committed bool        // a response header went to the client
}

// NewSession starts a session within parent; bind it to a node with Bind.
func NewSession(parent context.Context) *Session {
	ctx, cancel := context.WithCancel(parent)
	return &Session{ctx: ctx, cancel: cancel}
}

// Bind attaches s to n's sessions; a node already down ends it at once, so
// that a death between choosing the node and binding is not missed.
func (s *Session) Bind(n *Node) {
	if n == nil {
		return
	}
	set := &n.health.sessions
	set.mu.Lock()
	defer set.mu.Unlock()
	if n.Down(time.Now()) {
		s.end()
		return
	}
	if set.m == nil {
		set.m = map[*Session]struct{}{}
	}
	set.m[s] = struct{}{}
	s.mu.Lock()
	s.on = set
	s.mu.Unlock()
}

// Unbind detaches s from its node, before a retry moves it elsewhere or
// when the request is over.
func (s *Session) Unbind() {
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
func (s *Session) end() {
	s.mu.Lock()
	s.ended, s.on = true, nil
	s.mu.Unlock()
	s.cancel()
}

// Release ends the session's bookkeeping when reverse_proxy has returned,
// and reports whether the request was abandoned: its node died before any
// response reached the client, so it may be sent to another node.
func (s *Session) Release() (abandoned bool) {
	s.Unbind()
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended && !s.committed
}

// Committed reports whether any of the response went to the client.
func (s *Session) Committed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

// Commit reports whether a response may go to the client: not once the
// request has been abandoned.
func (s *Session) Commit() bool {
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
	m  map[*Session]struct{}
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

// Context is the request's context for the node: cancelled when the node
// is declared dead.
func (s *Session) Context() context.Context { return s.ctx }
