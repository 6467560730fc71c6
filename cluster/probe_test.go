package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// LiveKit answers GET / with 406 when it lost Redis: alive all the same. A
// refused connection takes the node out at once.
func TestProbeVerdicts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotAcceptable)
	}))
	_, r := twoNodes(t)
	p := newProber(Config{ProbeInterval: time.Hour, ProbeTimeout: 500 * time.Millisecond}, r.view.current, zap.NewNop(), NopObserver{})
	dial := strings.TrimPrefix(srv.URL, "http://")
	if err := p.probe(context.Background(), dial); err != nil {
		t.Fatalf("406 counted as dead: %v", err)
	}
	srv.Close()
	r.probes = p
	a := r.view.current().byID["ND_a"]
	r.probes.probed(a, p.probe(context.Background(), dial))
	if a.Routable(time.Now()) {
		t.Fatal("refused connection did not take the node out at once")
	}

	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer hang.Close()
	start := time.Now()
	if err := p.probe(context.Background(), strings.TrimPrefix(hang.URL, "http://")); err == nil {
		t.Fatal("a node that never answers passed the probe")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("probe waited %v, beyond its timeout", d)
	}
}
