package livekitlb

import (
	"bytes"
	"net/http/httptest"
	"testing"
)

// BenchmarkRoomFromToken: reading the room from a LiveKit token, the other
// per-request cost of the handler.
func BenchmarkRoomFromToken(b *testing.B) {
	tok := mint(b, testKey, testSecret, "standup", 3600e9)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := roomFromToken(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAPIRoom: reading the room of a server API call from its JSON
// body (and putting the body back), the cost the proxy adds to a CreateRoom.
func BenchmarkAPIRoom(b *testing.B) {
	body := []byte(`{"name":"standup","empty_timeout":300,"max_participants":12,"metadata":"team"}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", roomServicePrefix+"CreateRoom", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if room, err := apiRoom(req, "CreateRoom"); err != nil || room != "standup" {
			b.Fatal(room, err)
		}
	}
}
