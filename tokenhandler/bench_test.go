package tokenhandler

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/livekit/protocol/auth"
	"go.uber.org/zap"
)

// BenchmarkCreateRoom compares, in one run, the create-room handler with a
// bare net/http handler that decodes the same body and mints the same token.
// The workload is a meeting: every call asks for a token to a room that
// exists, as each participant does; placement is a fake in-memory placer.
// Compare ns/op of the two sub-benchmarks (target: handler >= 0.9x bare
// throughput).
func BenchmarkCreateRoom(b *testing.B) {
	body := `{"room_name":"standup","user_name":"Alice"}`
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req createRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			return
		}
		tok, err := auth.NewAccessToken(key, secret).SetIdentity(uniqueIdentity(req.UserName)).SetName(req.UserName).
			SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: req.RoomName}).ToJWT()
		if err != nil {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(createResponse{RoomName: req.RoomName, Token: tok, URL: "wss://" + r.Host, ServerURL: "wss://" + r.Host})
	})
	f := newFixture(b)
	f.h.logger = zap.NewNop() // production logs at info: the per-call line is debug
	handler := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return f.h.ServeHTTP(w, r, nil)
	})
	run := func(b *testing.B, serve func(http.ResponseWriter, *http.Request)) {
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest("POST", "http://livekit.example.com/api/create-room", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+authKey)
			ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
			r = r.WithContext(context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{}))
			w := httptest.NewRecorder()
			serve(w, r)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bare.ServeHTTP) })
	b.Run("handler", func(b *testing.B) { run(b, func(w http.ResponseWriter, r *http.Request) { _ = handler(w, r) }) })
}
