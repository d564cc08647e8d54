package admin

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/schema"
)

// target is a parsed /apisix/admin/{res}/{id}/{sub_path} request.
type target struct {
	kind    *resource.Kind
	id      string // "" when the URL has none
	parent  string // consumer username (credentials) or secret manager
	subPath string // PATCH sub-path, "" for whole-object
}

// dir is the store directory holding the kind's items for this target.
func (t *target) dir() string {
	switch t.kind.Name {
	case "credentials":
		return "/consumers/" + t.parent + "/credentials/"
	case "secrets":
		if t.parent == "" {
			return "/secrets/"
		}
		return "/secrets/" + t.parent + "/"
	}
	return "/" + t.kind.Name + "/"
}

// dispatch routes an authenticated request. rest is the path after
// /apisix/admin, still escaped.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, rest string) {
	rest = strings.Trim(rest, "/")
	var segs []string
	if rest != "" {
		for _, p := range strings.Split(rest, "/") {
			u, err := url.PathUnescape(p)
			if err != nil {
				u = p
			}
			segs = append(segs, u)
		}
	}
	if len(segs) == 0 {
		writeErr(w, http.StatusNotFound, "not found")
		return
	}
	switch segs[0] {
	case "plugins":
		if len(segs) == 2 && (segs[1] == "list" && r.Method == http.MethodGet || segs[1] == "reload") {
			// Dedicated routes in APISIX, outside run(): no body
			// parsing and no X-API-VERSION.
			s.plugins(w, r, segs[1:])
			return
		}
		if _, ok := readInput(w, r); !ok {
			return
		}
		w.Header().Set("X-API-VERSION", "v3")
		s.plugins(w, r, segs[1:])
		return
	case "schema":
		if len(segs) >= 2 && segs[1] == "validate" && r.Method == http.MethodPost {
			s.schemaValidate(w, r, segs[2:])
			return
		}
		if _, ok := readInput(w, r); !ok {
			return
		}
		w.Header().Set("X-API-VERSION", "v3")
		s.schema(w, r, segs[1:])
		return
	case "configs":
		if len(segs) == 2 && segs[1] == "validate" && r.Method == http.MethodPost {
			s.validateConfigs(w, r)
			return
		}
		writeErr(w, http.StatusNotFound, "not found")
		return
	case "status":
		// Not an APISIX resource; fall through to the unknown-type answer.
	}
	t := &target{}
	var ok bool
	switch {
	case segs[0] == "consumers" && len(segs) >= 3 && segs[2] == "credentials":
		t.kind, ok = resource.ByName("credentials")
		t.parent = segs[1]
		if len(segs) > 3 {
			t.id = segs[3]
		}
		if len(segs) > 4 {
			t.subPath = strings.Join(segs[4:], "/")
		}
	case segs[0] == "secrets":
		// APISIX validates the manager only inside check_conf (PUT and
		// the re-check of PATCH); GET, DELETE and PATCH of an unknown
		// manager just miss the key, and /secrets (or /secrets/{manager}
		// without id) lists every secret of every manager.
		t.kind, ok = resource.ByName("secrets")
		if len(segs) > 1 {
			t.parent = segs[1]
			if !safeID(t.parent) {
				if r.Method == http.MethodPut {
					writeErr(w, http.StatusBadRequest, "invalid secret manager: "+t.parent)
				} else {
					writeNotFound(w)
				}
				return
			}
		}
		if len(segs) > 2 {
			t.id = segs[2]
		}
		if len(segs) > 3 {
			t.subPath = strings.Join(segs[3:], "/")
		}
	case segs[0] == "credentials":
		ok = false
	default:
		t.kind, ok = resource.ByName(segs[0])
		if len(segs) > 1 {
			t.id = segs[1]
		}
		if len(segs) > 2 {
			t.subPath = strings.Join(segs[2:], "/")
		}
	}
	if !ok {
		writeErr(w, http.StatusNotFound, "Unsupported resource type: "+segs[0])
		return
	}
	if t.kind.Name == "stream_routes" && !s.opt.StreamMode {
		writeErr(w, http.StatusBadRequest, "stream mode is disabled, can not add stream routes")
		return
	}
	// As in APISIX's admin init.lua run(): the body is read and decoded
	// and ?ttl checked for every method before the resource handler runs,
	// and those early failures carry no X-API-VERSION header.
	in, ok := readInput(w, r)
	if !ok {
		return
	}
	w.Header().Set("X-API-VERSION", "v3")
	switch r.Method {
	case http.MethodGet:
		if t.id == "" {
			s.list(w, r, t)
		} else {
			s.get(w, t)
		}
	case http.MethodPut:
		s.put(w, r, t, in)
	case http.MethodPost:
		if t.kind.NoPost {
			writeErr(w, http.StatusMethodNotAllowed, "not supported `POST` method for "+t.kind.Singular)
			return
		}
		s.post(w, r, t, in)
	case http.MethodPatch:
		if t.kind.NoPatch {
			writeErr(w, http.StatusMethodNotAllowed, "not supported `PATCH` method for "+t.kind.Singular)
			return
		}
		s.patch(w, r, t, in)
	case http.MethodDelete:
		s.delete(w, r, t)
	}
}

// input is a request's decoded body and ttl.
type input struct {
	body    any  // decoded JSON body; nil when absent
	present bool // a non-empty body was sent
	ttl     time.Duration
}

// readInput reads and decodes the body and parses ?ttl, in APISIX's
// order. ok is false when an error response was written.
func readInput(w http.ResponseWriter, r *http.Request) (input, bool) {
	var in input
	body, ok := readBody(w, r)
	if !ok {
		return in, false
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		v, err := schema.DecodeJSON(body, maxJSONDepth)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{
				"error_msg": "invalid request body: " + err.Error(),
				"req_body":  string(body),
			})
			return in, false
		}
		in.body, in.present = v, v != nil
	}
	if in.ttl, ok = parseTTL(w, r); !ok {
		return in, false
	}
	return in, true
}
