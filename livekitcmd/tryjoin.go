package livekitcmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// tryJoin is verify's end-to-end check of a proxy: create a room at its
// create-room endpoint, as an app's backend would, then have it validate
// a join with the token it answered (GET /rtc/validate: LiveKit's own
// check of the token, the room's node and its limits), routed like a real
// join. Neither the key nor the token is ever shown.
type tryJoin struct {
	key    string
	client *http.Client
}

// The create-room endpoint's request and answer (tokenhandler), as much
// of them as a caller needs.
type (
	createRoomRequest struct {
		RoomName string `json:"room_name"`
		UserName string `json:"user_name"`
		TTL      int64  `json:"ttl"`
	}
	createRoomAnswer struct {
		Token string `json:"token"`
	}
)

// newTryJoin checks with key; dial ("" or host:port) is where every
// connection goes, caFile ("" or PEM) the only CAs https trusts.
func newTryJoin(key, dial, caFile string) (*tryJoin, error) {
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if dial != "" {
		if _, _, err := net.SplitHostPort(dial); err != nil {
			return nil, fmt.Errorf("--dial %q: want host:port", dial)
		}
		d := &net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dial)
		}
	}
	roots, err := loadCAs(caFile)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig.RootCAs = roots
	client := &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &tryJoin{key: key, client: client}, nil
}

// loadCAs: the CAs of caFile ("": nil, the system's).
func loadCAs(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
	}
	return pool, nil
}

// check creates room number i at endpoint and validates a join to it; it
// returns the problem, or "".
func (t *tryJoin) check(ctx context.Context, endpoint string, i int) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("--create-room %q is not an http(s) URL", endpoint)
	}
	if t.key == "" {
		return "CREATE_ROOM_KEY is not set: the create-room check needs the endpoint's key"
	}
	body, _ := json.Marshal(createRoomRequest{
		RoomName: fmt.Sprintf("deploy-verify-%d-%d", time.Now().Unix(), i), UserName: "deploy-verify", TTL: 60,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Sprintf("POST %s: %v", endpoint, err)
	}
	req.Header.Set("Authorization", "Bearer "+t.key)
	req.Header.Set("Content-Type", "application/json")
	code, answer, err := t.do(req)
	if err != nil {
		return fmt.Sprintf("POST %s: %v", endpoint, err)
	}
	var created createRoomAnswer
	if code != http.StatusOK || json.Unmarshal(answer, &created) != nil || created.Token == "" {
		return fmt.Sprintf("POST %s answered %d: %s", endpoint, code, t.shown(answer, ""))
	}
	validate := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/rtc/validate"}).String()
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, validate+"?"+url.Values{"access_token": {created.Token}}.Encode(), nil)
	if err != nil {
		return fmt.Sprintf("GET %s: %v", validate, err)
	}
	code, answer, err = t.do(req)
	if err != nil {
		return fmt.Sprintf("GET %s with the new room's token: %v", validate, err)
	}
	if code != http.StatusOK {
		return fmt.Sprintf("GET %s with the new room's token answered %d: %s", validate, code, t.shown(answer, created.Token))
	}
	return ""
}

// do sends req and reads at most 4 KiB of the answer. An error leaves out
// the request's URL, which may carry a token.
func (t *tryJoin) do(req *http.Request) (int, []byte, error) {
	resp, err := t.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, b, err
}

// shown is an answer as a problem line shows it: one line, 200 bytes at
// most, with neither the key nor token in it.
func (t *tryJoin) shown(b []byte, token string) string {
	s := strings.ToValidUTF8(string(b), "?")
	for _, secret := range []string{t.key, token} {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "<redacted>")
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
