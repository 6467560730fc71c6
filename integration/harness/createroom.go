package harness

import (
	"io"
	"net/http"
	"strings"
	"time"
)

// CreateRoom posts body (JSON) to the create-room endpoint at base
// (http://HOST:PORT/api/create-room), with key as its bearer token unless
// key is "", and returns the status and the body of the answer.
func CreateRoom(base, key, body string, timeout time.Duration) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/api/create-room", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}
