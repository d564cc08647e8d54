package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/schema"
	"github.com/sluice-gw/sluice/internal/store"
)

// item is one entry of a GET envelope.
type item struct {
	Key           string          `json:"key"`
	Value         json.RawMessage `json:"value"`
	CreatedIndex  int64           `json:"createdIndex"`
	ModifiedIndex int64           `json:"modifiedIndex"`
}

// writeResult is the envelope of PUT/POST/PATCH responses.
type writeResult struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

func (s *Server) fullKey(key string) string { return s.opt.Prefix + key }

// outValue prepares a stored value for a GET response: SSL private keys
// are never returned.
func (s *Server) outValue(t *target, raw []byte) json.RawMessage {
	if t.kind.Name != "ssls" {
		return raw
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return raw
	}
	delete(m, "key")
	delete(m, "keys")
	b, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return b
}

func (s *Server) get(w http.ResponseWriter, t *target) {
	if !safeID(t.id) {
		writeNotFound(w)
		return
	}
	kv, err := s.opt.Store.Get(context.Background(), t.dir()+t.id)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, item{Key: s.fullKey(kv.Key), Value: s.outValue(t, kv.Value), CreatedIndex: kv.CreateRev, ModifiedIndex: kv.ModRev})
}

// decodeBody reads and strictly decodes a JSON body. ok is false when a
// response was already written.
func decodeBody(w http.ResponseWriter, r *http.Request, emptyMsg string) (any, bool) {
	body, ok := readBody(w, r)
	if !ok {
		return nil, false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		writeErr(w, http.StatusBadRequest, emptyMsg)
		return nil, false
	}
	v, err := schema.DecodeJSON(body, maxJSONDepth)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error_msg": "invalid request body: " + err.Error(),
			"req_body":  string(body),
		})
		return nil, false
	}
	return v, true
}

// parseTTL handles ?ttl=N, checked before anything else as APISIX does.
func parseTTL(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	v := r.URL.Query().Get("ttl")
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		writeErr(w, http.StatusBadRequest, "invalid argument ttl: should be a number")
		return 0, false
	}
	if n <= 0 || n > 1<<31 {
		writeErr(w, http.StatusBadRequest, "invalid argument ttl: should be a positive number of seconds")
		return 0, false
	}
	return time.Duration(n * float64(time.Second)), true
}

// luaType names a decoded JSON value the way lua-resty-jsonschema does.
func luaType(v any) string {
	switch v.(type) {
	case map[string]any, []any:
		return "table"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "nil"
	default:
		return "number"
	}
}

// idString renders an id the way Lua's tostring does for JSON strings and
// integers.
func idString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// forbiddenTimes reproduces APISIX's check_forbidden_properties.
func forbiddenTimes(obj map[string]any) string {
	props := []string{"create_time", "update_time"}
	for _, p := range props {
		if _, ok := obj[p]; ok {
			return "the property is forbidden:  " + p
		}
	}
	for _, sub := range []string{"upstream", "plugins"} {
		if m, ok := obj[sub].(map[string]any); ok {
			for _, p := range props {
				if _, ok := m[p]; ok {
					return "the property is forbidden:  " + sub + "." + p
				}
			}
		}
	}
	return ""
}

// prepared is a validated object ready to store.
type prepared struct {
	key string
	obj map[string]any
}

// prepare runs APISIX's check_conf for PUT (needID), POST (!needID) and
// PATCH (allowTime) and the resource checks. It writes the error response
// itself and returns ok=false on failure.
func (s *Server) prepare(w http.ResponseWriter, t *target, v any, needID, allowTime bool) (*prepared, bool) {
	k := t.kind
	obj, isObj := v.(map[string]any)
	id := t.id
	switch k.Name {
	case "consumers":
		if isObj {
			uname := idString(obj["username"])
			if id != "" && uname != id {
				// consumers.lua checks the schema before the username.
				if !allowTime {
					if msg := forbiddenTimes(obj); msg != "" {
						writeErr(w, http.StatusBadRequest, msg)
						return nil, false
					}
				}
				if s.opt.Checker.SchemaCheck(k, obj) != nil {
					if err := s.opt.Checker.Check(k, obj); err != nil {
						writeErr(w, http.StatusBadRequest, err.Error())
						return nil, false
					}
				}
				writeErr(w, http.StatusBadRequest, "wrong username")
				return nil, false
			}
			id = uname
		}
	case "plugin_metadata":
		// check_conf: the timestamp prohibition comes before the plugin
		// name checks.
		if isObj && !allowTime {
			if msg := forbiddenTimes(obj); msg != "" {
				writeErr(w, http.StatusBadRequest, msg)
				return nil, false
			}
		}
		if id == "" {
			writeErr(w, http.StatusBadRequest, "missing plugin name")
			return nil, false
		}
		if _, ok := s.opt.Plugins.Lookup(id); !ok {
			writeErr(w, http.StatusBadRequest, "invalid plugin name")
			return nil, false
		}
		if !isObj {
			writeErr(w, http.StatusBadRequest, "invalid configuration: wrong type: expected object, got "+luaType(v))
			return nil, false
		}
		obj["id"] = id
		if err := s.opt.Checker.CheckPluginMetadata(id, obj); err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return nil, false
		}
		return &prepared{key: t.dir() + id, obj: obj}, true
	default:
		if isObj && id == "" {
			id = idString(obj["id"])
		}
		if needID && id == "" {
			writeErr(w, http.StatusBadRequest, "missing "+k.Singular+" id")
			return nil, false
		}
		if !needID && id != "" {
			writeErr(w, http.StatusBadRequest, "wrong "+k.Singular+" id, do not need it")
			return nil, false
		}
		if isObj && needID {
			// Secrets compare (and store) "{manager}/{id}", as
			// resource.lua's check_conf prefixes the id first.
			want := id
			if k.Name == "secrets" && t.id != "" {
				want = t.parent + "/" + t.id
			}
			if bid, ok := obj["id"]; ok && idString(bid) != want {
				writeErr(w, http.StatusBadRequest, "wrong "+k.Singular+" id")
				return nil, false
			}
			if t.id != "" {
				obj["id"] = want
			}
		}
	}
	if !isObj {
		writeErr(w, http.StatusBadRequest, "invalid configuration: wrong type: expected object, got "+luaType(v))
		return nil, false
	}
	if !allowTime {
		if msg := forbiddenTimes(obj); msg != "" {
			writeErr(w, http.StatusBadRequest, msg)
			return nil, false
		}
	}
	if err := s.opt.Checker.Check(k, obj); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	if !safeID(id) && needID {
		// The checker's id schema should have caught this; the store key
		// must never be built from an unchecked id.
		writeErr(w, http.StatusBadRequest, "invalid configuration: property \"id\" validation failed: object matches none of the required")
		return nil, false
	}
	if msg := s.checkRefs(k, obj); msg != "" {
		writeErr(w, http.StatusBadRequest, msg)
		return nil, false
	}
	key := t.dir() + id
	if k.Name == "consumers" || k.Name == "credentials" {
		self := key
		if msg := s.checkAuthKeys(self, k, obj); msg != "" {
			writeErr(w, http.StatusBadRequest, msg)
			return nil, false
		}
	}
	return &prepared{key: key, obj: obj}, true
}

// safeID reports whether an id from a URL or body can be used in a store key.
func safeID(id string) bool {
	if id == "" || len(id) > 256 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return id != "." && id != ".."
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, t *target, in input) {
	if !in.present {
		writeErr(w, http.StatusBadRequest, "missing configurations")
		return
	}
	p, ok := s.prepare(w, t, in.body, true, false)
	if !ok {
		return
	}
	// APISIX checks the owning consumer only after the credential itself
	// passed check_conf.
	if t.kind.Name == "credentials" && !s.consumerExists(t.parent) {
		writeErr(w, http.StatusNotFound, "consumer not found")
		return
	}
	ctx := r.Context()
	old, err := s.opt.Store.Get(ctx, p.key)
	var prev int64
	switch {
	case err == nil:
		prev = old.ModRev
		if t.kind.Name != "plugin_metadata" {
			var om map[string]any
			if json.Unmarshal(old.Value, &om) == nil {
				if ct, ok := om["create_time"]; ok {
					p.obj["create_time"] = ct
				}
			}
		}
	case errors.Is(err, store.ErrNotFound):
	default:
		writeStoreErr(w, err)
		return
	}
	if t.kind.Name != "plugin_metadata" {
		now := time.Now().Unix()
		if _, ok := p.obj["create_time"]; !ok {
			p.obj["create_time"] = now
		}
		p.obj["update_time"] = now
	}
	s.store(w, r, t, p, prev, in.ttl, true)
}

// store encrypts secrets, writes the object with a compare-and-swap on the
// revision it was read at, and answers with the stored value.
func (s *Server) store(w http.ResponseWriter, r *http.Request, t *target, p *prepared, prev int64, ttl time.Duration, createdStatus bool) {
	if err := s.encrypt(t.kind, p.obj); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	val, err := json.Marshal(p.obj)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid configuration: "+err.Error())
		return
	}
	kv, created, err := s.opt.Store.Put(r.Context(), p.key, val, store.PutOptions{TTL: ttl, IfModRev: &prev})
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	status := http.StatusOK
	if created && createdStatus {
		status = http.StatusCreated
	}
	writeJSON(w, status, writeResult{Key: s.fullKey(kv.Key), Value: kv.Value})
}

func (s *Server) post(w http.ResponseWriter, r *http.Request, t *target, in input) {
	if !in.present {
		writeErr(w, http.StatusBadRequest, "missing configurations")
		return
	}
	p, ok := s.prepare(w, t, in.body, false, false)
	if !ok {
		return
	}
	n, err := s.opt.Store.NextID(r.Context())
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	id := fmt.Sprintf("%020d", n)
	p.obj["id"] = id
	p.key = t.dir() + id
	now := time.Now().Unix()
	p.obj["create_time"] = now
	p.obj["update_time"] = now
	s.store(w, r, t, p, 0, in.ttl, true)
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, t *target, in input) {
	if t.id == "" {
		if t.kind.Name == "secrets" {
			writeErr(w, http.StatusBadRequest, "no secret id")
			return
		}
		writeErr(w, http.StatusBadRequest, "missing "+t.kind.Singular+" id")
		return
	}
	if !in.present {
		writeErr(w, http.StatusBadRequest, "missing new configuration")
		return
	}
	v := in.body
	patchObj, isObj := v.(map[string]any)
	if t.subPath == "" && !isObj {
		writeErr(w, http.StatusBadRequest, "invalid configuration")
		return
	}
	if !safeID(t.id) {
		writeNotFound(w)
		return
	}
	key := t.dir() + t.id
	old, err := s.opt.Store.Get(r.Context(), key)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	cur, err := schema.DecodeJSON(old.Value, 1000)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "stored value is not valid JSON: "+err.Error())
		return
	}
	curObj, _ := cur.(map[string]any)
	if curObj == nil {
		curObj = map[string]any{}
	}
	if err := s.decrypt(t.kind, curObj); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	now := time.Now().Unix()
	if t.subPath != "" {
		if msg := patchSubPath(curObj, t.subPath, v); msg != "" {
			writeErr(w, http.StatusBadRequest, msg)
			return
		}
		curObj["update_time"] = now
	} else {
		mergePatch(curObj, patchObj)
		if _, ok := patchObj["update_time"]; !ok {
			curObj["update_time"] = now
		}
	}
	if t.kind.Name == "plugin_metadata" {
		delete(curObj, "update_time")
	}
	p, ok := s.prepare(w, t, curObj, true, true)
	if !ok {
		return
	}
	s.store(w, r, t, p, old.ModRev, in.ttl, false)
}

// mergePatch deep-merges patch into dst: objects merge recursively, arrays
// and scalars replace, and JSON null deletes the key.
func mergePatch(dst, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			continue
		}
		pm, pIsObj := v.(map[string]any)
		dm, dIsObj := dst[k].(map[string]any)
		if pIsObj && dIsObj {
			mergePatch(dm, pm)
			continue
		}
		dst[k] = v
	}
}

// patchSubPath sets the value at a slash-separated path, creating
// intermediate objects; a non-object on the way is an error.
func patchSubPath(obj map[string]any, sub string, v any) string {
	parts := strings.Split(sub, "/")
	cur := obj
	for i, p := range parts {
		if p == "" {
			return "invalid sub-path: /" + sub
		}
		if i == len(parts)-1 {
			if v == nil {
				delete(cur, p)
			} else {
				cur[p] = v
			}
			return ""
		}
		next, exists := cur[p]
		if !exists {
			m := map[string]any{}
			cur[p] = m
			cur = m
			continue
		}
		m, ok := next.(map[string]any)
		if !ok {
			return "invalid sub-path: /" + sub
		}
		cur = m
	}
	return ""
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, t *target) {
	if t.id == "" {
		// resource.lua's delete: "missing <kind> id" for every kind,
		// plugin_metadata included.
		writeErr(w, http.StatusBadRequest, "missing "+t.kind.Singular+" id")
		return
	}
	if !safeID(t.id) {
		writeNotFound(w)
		return
	}
	key := t.dir() + t.id
	ctx := r.Context()
	// APISIX runs the delete checker before it touches the key, so a
	// reference to an already missing object still answers 400.
	if r.URL.Query().Get("force") != "true" {
		if msg := s.deleteCheck(ctx, t); msg != "" {
			writeErr(w, http.StatusBadRequest, msg)
			return
		}
	}
	if _, err := s.opt.Store.Get(ctx, key); err != nil {
		writeStoreErr(w, err)
		return
	}
	if _, err := s.opt.Store.Delete(ctx, key); err != nil {
		writeStoreErr(w, err)
		return
	}
	if t.kind.Name == "consumers" {
		if _, err := s.opt.Store.DeletePrefix(ctx, key+"/"); err != nil {
			writeStoreErr(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": "1", "key": s.fullKey(key)})
}

func (s *Server) consumerExists(name string) bool {
	if !safeID(name) {
		return false
	}
	_, err := s.opt.Store.Get(context.Background(), "/consumers/"+name)
	return err == nil
}

// ensure resource is used even if the kind table changes shape.
var _ = resource.ByName
