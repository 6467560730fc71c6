package livekitlb

import (
	"bufio"
	"errors"
	"net"
	"net/http"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// sessionWriter passes a response to the client unless its session was
// abandoned first: then reverse_proxy's answer to the cancelled request
// (499) is dropped, and the handler sends the request elsewhere.
type sessionWriter struct {
	http.ResponseWriter
	s      *cluster.Session
	status int // the status the client got (0: none yet)
}

func (w *sessionWriter) WriteHeader(code int) {
	if w.s.Commit() {
		if w.status == 0 || w.status < 200 {
			w.status = code
		}
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	if !w.s.Commit() {
		return len(b), nil
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Hijack takes the client's connection for a WebSocket, unless the session
// was abandoned while the node's 101 was on its way.
func (w *sessionWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.s.Commit() {
		return nil, nil, errAbandoned
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// FlushError flushes a committed response.
func (w *sessionWriter) FlushError() error {
	if !w.s.Commit() {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the rest (deadlines) beneath.
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var errAbandoned = errors.New("livekit_lb: the node died before it answered; the request goes to another node")
