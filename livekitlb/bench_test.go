package livekitlb

import (
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
