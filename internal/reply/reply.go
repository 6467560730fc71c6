// Package reply writes the JSON answers every module of ours gives, so that
// each refusal looks the same to clients.
package reply

import (
	"encoding/json"
	"net/http"
)

// Error answers with {"error": msg} and status.
func Error(w http.ResponseWriter, status int, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// twirpCodes are Twirp's error codes for the statuses we refuse with.
var twirpCodes = map[int]string{
	http.StatusBadRequest: "malformed", http.StatusUnauthorized: "unauthenticated",
	http.StatusRequestEntityTooLarge: "invalid_argument", http.StatusUnsupportedMediaType: "malformed",
}

// Twirp answers a Twirp call (LiveKit's server API) as a Twirp server would,
// {"code": ..., "msg": ...}, so that server SDKs report the reason.
func Twirp(w http.ResponseWriter, status int, msg string) error {
	code := twirpCodes[status]
	if code == "" {
		code = "internal"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(struct {
		Code string `json:"code"`
		Msg  string `json:"msg"`
	}{code, msg})
}
