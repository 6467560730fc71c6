package tokenhandler

import (
	"crypto/rand"
	"encoding/hex"
	"time"
	"unicode/utf8"

	"github.com/livekit/protocol/auth"
)

// mint signs the participant's join token: roomJoin for that room only.
func (h *Handler) mint(req *createRequest) (string, error) {
	identity := req.Identity // decided by decideIdentity
	ttl := time.Duration(h.TTL)
	if req.TTL > 0 {
		ttl = time.Duration(req.TTL) * time.Second
	}
	return auth.NewAccessToken(h.apiKey, h.apiSecret).
		SetIdentity(identity).
		SetName(req.UserName).
		SetMetadata(req.Metadata).
		SetValidFor(ttl).
		SetVideoGrant(&auth.VideoGrant{
			RoomJoin:       true,
			Room:           req.RoomName,
			CanPublish:     boolOr(h.CanPublish, true),
			CanSubscribe:   boolOr(h.CanSubscribe, true),
			CanPublishData: boolOr(h.CanPublishData, true),
		}).ToJWT()
}

// uniqueIdentity: user_name plus a random suffix, within LiveKit's limit.
func uniqueIdentity(userName string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	base := userName
	for len(base) > maxIdentity-9 { // cut whole runes only
		_, size := utf8.DecodeLastRuneInString(base)
		base = base[:len(base)-size]
	}
	return base + "-" + hex.EncodeToString(b[:])
}

func boolOr(p *bool, def bool) *bool {
	if p == nil {
		return &def
	}
	return p
}
