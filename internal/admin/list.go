package admin

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// list answers GET on a collection, with APISIX's filters and pagination
// (reference/apisix-core.md §1.7).
func (s *Server) list(w http.ResponseWriter, r *http.Request, t *target) {
	if t.kind.Name == "credentials" && !s.consumerExists(t.parent) {
		writeNotFound(w)
		return
	}
	q := r.URL.Query()
	var page, pageSize int
	paging := false
	if ps, pp := q.Get("page_size"), q.Get("page"); ps != "" && pp != "" {
		n, err1 := strconv.ParseFloat(ps, 64)
		p, err2 := strconv.ParseFloat(pp, 64)
		if err1 == nil && err2 == nil {
			if n < 10 || n > 500 {
				writePlain(w, http.StatusBadRequest, "page_size must be between 10 and 500")
				return
			}
			paging = true
			pageSize = int(n)
			page = int(p)
			if page < 1 {
				page = 1
			}
		}
	}
	var nameRe, uriRe *regexp.Regexp
	if v := q.Get("name"); v != "" {
		re, err := regexp.Compile(v)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "invalid argument name: "+err.Error())
			return
		}
		nameRe = re
	}
	if v := q.Get("uri"); v != "" {
		re, err := regexp.Compile(v)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "invalid argument uri: "+err.Error())
			return
		}
		uriRe = re
	}
	label, hasLabel := "", q.Has("label")
	if hasLabel {
		label = q.Get("label")
	}
	var exact url.Values
	if f := q.Get("filter"); f != "" && (t.kind.Name == "routes" || t.kind.Name == "stream_routes") {
		exact, _ = url.ParseQuery(f)
	}

	dir := t.dir()
	depth := 0 // slashes allowed in a key below dir
	if t.kind.Name == "secrets" {
		// APISIX lists /secrets/ whatever the manager segment says:
		// GET /secrets and GET /secrets/vault both return every secret.
		dir, depth = "/secrets/", 1
	}
	kvs, _, err := s.opt.Store.List(r.Context(), dir)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	items := make([]item, 0, len(kvs))
	for _, kv := range kvs {
		if strings.Count(kv.Key[len(dir):], "/") != depth {
			continue // credentials under a consumer, or a directory marker
		}
		if nameRe != nil || uriRe != nil || hasLabel || exact != nil {
			var m map[string]any
			if json.Unmarshal(kv.Value, &m) != nil {
				continue
			}
			if !matchFilters(m, nameRe, uriRe, hasLabel, label, exact) {
				continue
			}
		}
		items = append(items, item{Key: s.fullKey(kv.Key), Value: s.outValue(t, kv.Value), CreatedIndex: kv.CreateRev, ModifiedIndex: kv.ModRev})
	}
	total := len(items)
	if paging {
		sort.SliceStable(items, func(i, j int) bool { return items[i].CreatedIndex < items[j].CreatedIndex })
		start := (page - 1) * pageSize
		if start > len(items) {
			start = len(items)
		}
		end := start + pageSize
		if end > len(items) {
			end = len(items)
		}
		items = items[start:end]
	}
	writeJSON(w, http.StatusOK, struct {
		List  []item `json:"list"`
		Total int    `json:"total"`
	}{items, total})
}

func matchFilters(m map[string]any, nameRe, uriRe *regexp.Regexp, hasLabel bool, label string, exact url.Values) bool {
	if nameRe != nil {
		n, ok := m["name"].(string)
		if !ok || !nameRe.MatchString(n) {
			return false
		}
	}
	if uriRe != nil {
		hit := false
		if u, ok := m["uri"].(string); ok && uriRe.MatchString(u) {
			hit = true
		}
		if us, ok := m["uris"].([]any); ok {
			for _, u := range us {
				if s, ok := u.(string); ok && uriRe.MatchString(s) {
					hit = true
				}
			}
		}
		if !hit {
			return false
		}
	}
	if hasLabel {
		labels, _ := m["labels"].(map[string]any)
		if _, ok := labels[label]; !ok || label == "" {
			return false
		}
	}
	for k, vs := range exact {
		if k != "service_id" && k != "upstream_id" {
			continue
		}
		if len(vs) == 0 || idString(m[k]) != vs[0] {
			return false
		}
	}
	return true
}
