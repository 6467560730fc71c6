package tokenhandler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// LiveKit's default limits (livekit-server pkg/config: max_room_name_length,
// max_participant_identity_length, max_participant_name_length).
const (
	maxRoomName = 256
	maxIdentity = 256
	maxUserName = 256
)

// maxMetadata bounds the caller's metadata: it travels in the token, and a
// token must fit the URL of the JS SDK's signal request, where proxies and
// servers commonly stop at 8 KiB.
const maxMetadata = 4 << 10

// createRequest is the body of a create-room call.
type createRequest struct {
	RoomName string `json:"room_name"`
	UserName string `json:"user_name"`
	// Optional: defaults to user_name plus a random suffix, so two calls with
	// the same user_name do not kick each other out of the room.
	Identity string `json:"identity,omitempty"`
	Metadata string `json:"metadata,omitempty"`
	// Token lifetime in seconds, capped by the handler's max_ttl.
	TTL int64 `json:"ttl,omitempty"`
}

// createResponse is the answer of the original design: both URLs are the
// proxy's public address, never a node's.
type createResponse struct {
	RoomName  string `json:"room_name"`
	Token     string `json:"token"`
	URL       string `json:"url"`
	ServerURL string `json:"server_url"`
}

// httpError is a refusal with its status; its message is safe to show.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// decodeRequest reads and checks the body: JSON only, at most limit bytes,
// no unknown fields, names LiveKit would accept.
func decodeRequest(r *http.Request, limit int64, maxTTL time.Duration) (*createRequest, *httpError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, refuse(http.StatusUnsupportedMediaType, "body must be application/json")
	}
	if r.ContentLength > limit {
		return nil, refuse(http.StatusRequestEntityTooLarge, "body larger than %d bytes", limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, refuse(http.StatusRequestEntityTooLarge, "body larger than %d bytes", limit)
		}
		return nil, refuse(http.StatusBadRequest, "could not read the body")
	}
	req, herr := parseRequest(body)
	if herr != nil {
		return nil, herr
	}
	if e := req.validate(maxTTL); e != nil {
		return nil, e
	}
	return req, nil
}

// parseRequest reads one JSON object whose keys are createRequest's, each
// at most once and spelled exactly: encoding/json alone matches keys in
// any case and lets a second copy win, so {"room_name":..,"ROOM_NAME":..}
// would mean whatever the last one says.
func parseRequest(body []byte) (*createRequest, *httpError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, refuse(http.StatusBadRequest, "malformed JSON body: %s", jsonProblem(orNotObject(err)))
	}
	var req createRequest
	fields := map[string]any{
		"room_name": &req.RoomName, "user_name": &req.UserName, "identity": &req.Identity,
		"metadata": &req.Metadata, "ttl": &req.TTL,
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, refuse(http.StatusBadRequest, "malformed JSON body: %s", jsonProblem(err))
		}
		key, _ := t.(string)
		dst, known := fields[key]
		switch {
		case !known:
			return nil, refuse(http.StatusBadRequest, "malformed JSON body: unknown field %s", cluster.Quote(key))
		case seen[key]:
			return nil, refuse(http.StatusBadRequest, "malformed JSON body: field %s given twice", key)
		}
		seen[key] = true
		if err := dec.Decode(dst); err != nil {
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) {
				return nil, refuse(http.StatusBadRequest, "malformed JSON body: field %s must be a %s", key, typ.Type)
			}
			return nil, refuse(http.StatusBadRequest, "malformed JSON body: %s", jsonProblem(err))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, refuse(http.StatusBadRequest, "malformed JSON body: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, refuse(http.StatusBadRequest, "malformed JSON body: trailing data after the object")
	}
	return &req, nil
}

func orNotObject(err error) error {
	if err == nil {
		return errors.New("not a JSON object")
	}
	return err
}

// jsonProblem keeps the decoder's explanation without echoing the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %s must be a %s", typ.Field, typ.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "empty or truncated"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "not a JSON object"
}

func (req *createRequest) validate(maxTTL time.Duration) *httpError {
	for _, f := range []struct {
		name, value string
		required    bool
		max         int
	}{
		{"room_name", req.RoomName, true, maxRoomName},
		{"user_name", req.UserName, true, maxUserName},
		{"identity", req.Identity, false, maxIdentity},
	} {
		if f.value == "" {
			if f.required {
				return refuse(http.StatusBadRequest, "%s is required", f.name)
			}
			continue
		}
		if msg := checkName(f.value, f.max); msg != "" {
			return refuse(http.StatusBadRequest, "%s %s", f.name, msg)
		}
	}
	if !utf8.ValidString(req.Metadata) {
		return refuse(http.StatusBadRequest, "metadata must be UTF-8")
	}
	if len(req.Metadata) > maxMetadata {
		return refuse(http.StatusBadRequest, "metadata is longer than %d bytes", maxMetadata)
	}
	// in seconds: a Duration of a huge ttl overflows and wraps
	if max := int64(maxTTL / time.Second); req.TTL < 0 || req.TTL > max {
		return refuse(http.StatusBadRequest, "ttl must be 1 to %d seconds (or left out for the default)", max)
	}
	return nil
}

// checkName returns why LiveKit (or a URL, a log line, Redis) would choke on
// a name, or "".
func checkName(s string, max int) string {
	switch {
	case len(s) > max:
		return fmt.Sprintf("is longer than %d bytes", max)
	case !utf8.ValidString(s):
		return "must be UTF-8"
	case strings.TrimSpace(s) != s || strings.TrimSpace(s) == "":
		return "must not start or end with white space"
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return "must not contain control characters"
		}
	}
	return ""
}
