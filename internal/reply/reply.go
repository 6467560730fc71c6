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
