package livekitlb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// roomServicePrefix is the path of LiveKit's server API (Twirp): the
// server SDKs' RoomServiceClient and the `lk` CLI call it.
const roomServicePrefix = "/twirp/livekit.RoomService/"

// maxAPIBody bounds the body the proxy reads to find a server API call's
// room; LiveKit's own messages are far smaller (SendData's payload is
// limited to 15 KiB by the SDKs).
const maxAPIBody = 1 << 20

// roomRequests are the server API calls that name a room (a string field
// `room`, or CreateRoom's `name`), read from LiveKit's own descriptor of
// RoomService so that a call it adds is covered: their room is read from
// the body, so that the call goes to the room's node (CreateRoom: placed by
// the proxy first). The other calls (ListRooms...) go to any routable node.
var roomRequests = func() map[string]roomField {
	out := map[string]roomField{}
	methods := livekit.File_livekit_room_proto.Services().ByName("RoomService").Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		name := protoreflect.Name("room")
		if m.Name() == "CreateRoom" {
			name = "name"
		}
		field := m.Input().Fields().ByName(name)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
		if field == nil || field.Kind() != protoreflect.StringKind || field.IsList() || err != nil {
			continue
		}
		out[string(m.Name())] = roomField{mt, field}
	}
	return out
}()

// roomField is a call's request type and its field that names the room.
type roomField struct {
	msg   protoreflect.MessageType
	field protoreflect.FieldDescriptor
}

// apiError is a refusal of a server API call, with its status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

var errPermission = errors.New("permissions denied")

// errTooLarge refuses a body over maxAPIBody, declared or read.
var errTooLarge = &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxAPIBody)}

// apiRoom reads the room the server API call method (of roomServicePrefix)
// names from its body (JSON or protobuf, as Twirp accepts both), and puts
// the body back for the node. Calls that name no room return "".
func apiRoom(r *http.Request, method string) (room string, err error) {
	call, ok := roomRequests[method]
	if !ok || r.Method != http.MethodPost {
		return "", nil
	}
	if r.ContentLength > maxAPIBody {
		return "", errTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	_ = r.Body.Close()
	if err != nil {
		return "", &apiError{http.StatusBadRequest, "could not read the request body"}
	}
	if len(body) > maxAPIBody {
		return "", errTooLarge
	}
	r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	msg := call.msg.New().Interface()
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, msg)
	case "application/protobuf":
		err = proto.Unmarshal(body, msg)
	default:
		return "", &apiError{http.StatusUnsupportedMediaType, "Content-Type must be application/json or application/protobuf"}
	}
	if err != nil {
		return "", &apiError{http.StatusBadRequest, "malformed " + method + " request body"}
	}
	if room = msg.ProtoReflect().Get(call.field).String(); room == "" {
		return "", &apiError{http.StatusBadRequest, method + " names no room"}
	}
	return room, nil
}

// isCreateRoom: a server API CreateRoom.
func isCreateRoom(r *http.Request) bool { return r.URL.Path == roomServicePrefix+"CreateRoom" }

// mayCall checks the grants before the body is read, against the room the
// token names (the only one a roomAdmin grant covers): a participant's
// token cannot make the proxy buffer a megabyte.
func mayCall(g *auth.ClaimGrants, method string) bool { return permitted(g, method, roomOf(g)) }

// permitted checks a verified token's grants for a server API call as
// LiveKit does (pkg/service/auth.go: EnsureCreatePermission,
// EnsureListPermission, EnsureAdminPermission), so that a call LiveKit
// would refuse places nothing. Calls not listed are left to LiveKit.
func permitted(g *auth.ClaimGrants, method, room string) bool {
	v := (*auth.VideoGrant)(nil)
	if g != nil {
		v = g.Video
	}
	switch method {
	case "CreateRoom", "DeleteRoom":
		return v != nil && v.RoomCreate
	case "ListRooms":
		return v != nil && v.RoomList
	case "ForwardParticipant", "MoveParticipant":
		return true // a grant on two rooms: LiveKit checks it
	}
	if _, ok := roomRequests[method]; ok {
		return v != nil && v.RoomAdmin && v.Room == room
	}
	return true
}
