package tokenhandler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/livekit/protocol/auth"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// createAttempts: a node that fails to answer CreateRoom is reported and
// the room placed on the next one.
const createAttempts = 2

// createRoom places the room (the same placement and atomic write as
// livekit_lb) and creates it on that node, so it exists when the client
// joins and the join lands there. On failure nothing stays written.
func (h *Handler) createRoom(ctx context.Context, room string) (*cluster.Node, *httpError) {
	h.placer.Ready(ctx)
	var lastErr error
	for range createAttempts {
		node, outcome, err := h.placer.Route(ctx, room)
		if err != nil {
			if errors.Is(err, cluster.ErrRedis) {
				return nil, refuse(http.StatusServiceUnavailable, "cannot place the room: %s", cluster.ErrRedis)
			}
			if errors.Is(err, cluster.ErrFull) {
				return nil, refuse(http.StatusServiceUnavailable, "cannot place the room: %s", cluster.ErrFull)
			}
			return nil, refuse(http.StatusServiceUnavailable, "cannot place the room: %s", cluster.ErrNoNode)
		}
		if h.created.has(room, node.ID) {
			return node, nil
		}
		err = h.twirpCreateRoom(ctx, node, room)
		if err == nil {
			h.created.add(room, node.ID)
			return node, nil
		}
		lastErr = err
		h.logger.Warn("CreateRoom failed", zap.String("room", room), zap.String("node", node.ID), zap.Error(err))
		if outcome == cluster.OutcomePlaced || outcome == cluster.OutcomeReplaced {
			if uerr := h.placer.Unplace(context.WithoutCancel(ctx), room, node.ID); uerr != nil {
				h.logger.Warn("could not undo placement", zap.String("room", room), zap.Error(uerr))
			}
		}
		var nerr *nodeError
		if errors.As(err, &nerr) && nerr.status > 0 {
			break // the node answered: LiveKit refused, another node would too
		}
		h.placer.Failed(node, room)
	}
	var nerr *nodeError
	if errors.As(lastErr, &nerr) && nerr.status >= 400 && nerr.status < 500 {
		return nil, refuse(http.StatusBadRequest, "LiveKit refused the room: %s", nerr.msg)
	}
	return nil, refuse(http.StatusBadGateway, "LiveKit could not create the room")
}

// nodeError is a failed CreateRoom call; status is 0 when the node did not
// answer at all.
type nodeError struct {
	status int
	msg    string
}

func (e *nodeError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.msg) }

// twirpCreateRoom calls LiveKit's RoomService.CreateRoom on node (Twirp,
// JSON) with a short-lived roomCreate token.
func (h *Handler) twirpCreateRoom(ctx context.Context, node *cluster.Node, room string) error {
	tok, err := auth.NewAccessToken(h.apiKey, h.apiSecret).
		SetVideoGrant(&auth.VideoGrant{RoomCreate: true, Room: room}).
		SetValidFor(time.Minute).ToJWT()
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{
		"name":             room,
		"empty_timeout":    uint32(time.Duration(h.EmptyTimeout) / time.Second),
		"max_participants": h.MaxParticipants,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+node.Dial+"/twirp/livekit.RoomService/CreateRoom", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := h.client.Do(req)
	if err != nil {
		return &nodeError{msg: err.Error()}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		var tw struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(msg, &tw) == nil && tw.Msg != "" {
			msg = []byte(tw.Msg)
		}
		return &nodeError{status: resp.StatusCode, msg: string(msg)}
	}
	return nil
}

// createdRooms remembers rooms this handler created recently, so that the
// other participants of a meeting, who each ask for a token, cost no
// CreateRoom call while the room stays on the same node.
type createdRooms struct {
	mu    sync.Mutex
	rooms map[string]createdRoom
}

type createdRoom struct {
	nodeID string
	at     time.Time
}

// createdTTL stays well under LiveKit's empty_timeout, after which an
// unjoined room closes; a join after that re-creates it anyway.
const (
	createdTTL = 10 * time.Second
	createdMax = 100_000
)

func (c *createdRooms) has(room, nodeID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.rooms[room]
	return ok && e.nodeID == nodeID && time.Since(e.at) < createdTTL
}

func (c *createdRooms) add(room, nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rooms == nil || len(c.rooms) >= createdMax {
		c.rooms = make(map[string]createdRoom) // bounded: start over
	}
	c.rooms[room] = createdRoom{nodeID: nodeID, at: time.Now()}
}
