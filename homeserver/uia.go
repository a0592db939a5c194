package homeserver

import (
	"encoding/json"

	"maunium.net/go/mautrix"
)

// ParseUIA parses a homeserver's 401 user-interactive authentication body. It
// tolerates the quirks of real homeservers: "completed": null (Dendrite after
// a failed stage; returned as an empty, non-nil slice), a missing, null or
// empty "session", missing or null "params", flows whose "stages" are null, and
// fields of the wrong type other than "flows" (ignored). errcode and error are
// kept. It returns ok=false when body is not a JSON object with at least one
// flow, i.e. not a UIA challenge.
func ParseUIA(body []byte) (resp *mautrix.RespUserInteractive, ok bool) {
	var raw struct {
		Flows     json.RawMessage `json:"flows"`
		Params    json.RawMessage `json:"params"`
		Session   json.RawMessage `json:"session"`
		Completed json.RawMessage `json:"completed"`
		ErrCode   json.RawMessage `json:"errcode"`
		Error     json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, false
	}
	var flows []mautrix.UIAFlow
	if err := json.Unmarshal(raw.Flows, &flows); err != nil || len(flows) == 0 {
		return nil, false
	}
	for i := range flows {
		if flows[i].Stages == nil {
			flows[i].Stages = []mautrix.AuthType{}
		}
	}
	r := &mautrix.RespUserInteractive{Flows: flows, Completed: []string{}}
	lenient(raw.Params, &r.Params)
	lenient(raw.Session, &r.Session)
	lenient(raw.ErrCode, &r.ErrCode)
	lenient(raw.Error, &r.Error)
	var completed []string
	if lenient(raw.Completed, &completed) && completed != nil {
		r.Completed = completed
	}
	return r, true
}

// lenient decodes data into v when it is present and of the right type, and
// reports whether it did; on failure v is left as it was.
func lenient[T any](data json.RawMessage, v *T) bool {
	if len(data) == 0 {
		return false
	}
	var tmp T
	if err := json.Unmarshal(data, &tmp); err != nil {
		return false
	}
	*v = tmp
	return true
}
