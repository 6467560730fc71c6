package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// adminClient bounds every admin API request of the harness.
var adminClient = &http.Client{Timeout: 10 * time.Second}

// Admin sends GET path to Caddy's admin endpoint and returns the body; with
// into set, it decodes the JSON body into it. A status other than 200 is an
// error.
func (c *Caddy) Admin(path string, into any) (string, error) {
	resp, err := adminClient.Get("http://" + c.adminAddr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			return string(body), fmt.Errorf("GET %s: %v in %s", path, err, body)
		}
	}
	return string(body), nil
}

// NodesView is the proxy's view of the nodes: GET /livekit/nodes.
type NodesView struct {
	RedisReachable bool       `json:"redis_reachable"`
	Nodes          []NodeView `json:"nodes"`
	Ignored        []struct {
		Field, Reason string
	} `json:"ignored_entries"`
}

// NodeView is one node of NodesView.
type NodeView struct {
	ID       string  `json:"id"`
	Dial     string  `json:"dial"`
	Region   string  `json:"region"`
	State    string  `json:"state"`
	Routable bool    `json:"routable"`
	Drained  bool    `json:"drained"`
	Full     bool    `json:"full"`      // at a capacity limit (max_rooms ...)
	NewRooms bool    `json:"new_rooms"` // takes new rooms
	StatsAge float64 `json:"stats_age_seconds"`
	Rooms    int     `json:"rooms"`
}

// Nodes reads GET /livekit/nodes.
func (c *Caddy) Nodes() (NodesView, error) {
	var v NodesView
	_, err := c.Admin("/livekit/nodes", &v)
	return v, err
}

// LogEntry is one JSON line of Caddy's log.
type LogEntry struct {
	TS     float64 `json:"ts"`
	Level  string  `json:"level"`
	Logger string  `json:"logger"`
	Msg    string  `json:"msg"`
	Fields map[string]any
	Raw    string
}

// Time is when the entry was logged.
func (e LogEntry) Time() time.Time { return UnixTime(e.TS) }

// UnixTime turns a log line's ts (seconds since 1970) into a time.
func UnixTime(ts float64) time.Time {
	sec := int64(ts)
	return time.Unix(sec, int64((ts-float64(sec))*1e9))
}

// Has reports whether the entry has every field of kv (key, value, ...),
// compared as text.
func (e LogEntry) Has(kv ...string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		v, ok := e.Fields[kv[i]]
		if !ok || fmt.Sprint(v) != kv[i+1] {
			return false
		}
	}
	return true
}

// LogEntries returns the JSON lines with a message that Caddy has logged so far.
func (c *Caddy) LogEntries() []LogEntry {
	var out []LogEntry
	for _, line := range c.proc.logs.Lines() {
		if e, ok := ParseLogLine(line); ok {
			out = append(out, e)
		}
	}
	return out
}

// ParseLogLine reads one JSON log line of Caddy (zap); ok is false for a
// line that is not JSON or has no message.
func ParseLogLine(line string) (e LogEntry, ok bool) {
	if json.Unmarshal([]byte(line), &e) != nil || e.Msg == "" || json.Unmarshal([]byte(line), &e.Fields) != nil {
		return LogEntry{}, false
	}
	e.Raw = line
	return e, true
}

// Logged returns the entries with message msg and the fields kv (key,
// value, ...).
func (c *Caddy) Logged(msg string, kv ...string) []LogEntry {
	var out []LogEntry
	for _, e := range c.LogEntries() {
		if e.Msg == msg && e.Has(kv...) {
			out = append(out, e)
		}
	}
	return out
}

// LogLines returns every line Caddy has written so far, JSON or not.
func (c *Caddy) LogLines() []string { return c.proc.logs.Lines() }

// Messages filters entries by message.
func Messages(entries []LogEntry, msg string) []LogEntry {
	var out []LogEntry
	for _, e := range entries {
		if e.Msg == msg {
			out = append(out, e)
		}
	}
	return out
}
