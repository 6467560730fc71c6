package livekitlb

import (
	"encoding/json"
	"net/http"
)

// WriteJSONError answers with {"error": msg} and status; shared with the
// token handler so every refusal looks the same to clients.
func WriteJSONError(w http.ResponseWriter, status int, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
