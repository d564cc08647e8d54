// Package admin serves the APISIX v3 Admin API (/apisix/admin/...) over a
// store.Store. It reproduces APISIX's observable behaviour: paths, methods,
// envelopes, status codes and error bodies (reference/apisix-core.md §1).
package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/sluice-gw/sluice/internal/crypt"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store"
)

// MaxBodyBytes is APISIX's Admin API request body limit (1.5 MiB).
const MaxBodyBytes = 1572864

// maxJSONDepth caps nesting of admin bodies far below encoding/json's own
// limit, so a hostile body cannot make decoding expensive.
const maxJSONDepth = 64

// Role is what an admin key may do.
type Role string

// Roles of admin keys.
const (
	RoleAdmin  Role = "admin"  // every method
	RoleViewer Role = "viewer" // GET only
)

// Key is one configured admin key.
type Key struct {
	Name string
	Key  string
	Role Role
}

// Options configure a Server.
type Options struct {
	Store   store.Store
	Plugins *plugin.Registry
	Checker *resource.Checker
	// Keys are the accepted admin keys. KeyRequired false (or no keys)
	// disables authentication, as admin_key_required: false does in APISIX.
	Keys        []Key
	KeyRequired bool
	// Allow lists the client networks that may reach the Admin API; empty
	// allows everyone. Only the socket peer address counts.
	Allow []netip.Prefix
	// CORS adds APISIX's permissive CORS headers to every response.
	CORS bool
	// Server is the Server header value.
	Server string
	// Prefix is the key prefix shown in envelopes ("/apisix").
	Prefix string
	// Keyring encrypts SSL private keys (and plugin encrypt_fields) at
	// rest; nil stores them as sent.
	Keyring *crypt.Keyring
	// StreamMode enables the stream_routes resource.
	StreamMode bool
	// Status, when set, serves GET /sluice/status (behind the admin key).
	Status http.Handler
	// Logger receives operational logs; keys and bodies are never logged.
	Logger *slog.Logger
}

// Server is the Admin API handler.
type Server struct {
	opt       Options
	keyHashes []keyHash
}

type keyHash struct {
	sum  [32]byte
	role Role
}

// New returns an Admin API server.
func New(opt Options) *Server {
	if opt.Prefix == "" {
		opt.Prefix = "/apisix"
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opt: opt}
	if opt.Checker != nil && opt.Checker.RefCheck == nil {
		// The checker is built for this server; references are checked
		// against this server's store at APISIX's point in the checks.
		opt.Checker.RefCheck = s.refCheck
	}
	for _, k := range opt.Keys {
		s.keyHashes = append(s.keyHashes, keyHash{sum: sha256.Sum256([]byte(k.Key)), role: k.Role})
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Server", s.opt.Server)
	if !s.allowed(r) {
		writeHTML(w, http.StatusForbidden)
		return
	}
	if s.opt.CORS {
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", "*")
		h.Set("Access-Control-Max-Age", "3600")
	}
	path := r.URL.EscapedPath()
	if path == "/sluice/status" && s.opt.Status != nil {
		if _, ok := s.authorize(w, r); ok {
			s.opt.Status.ServeHTTP(w, r)
		}
		return
	}
	if path != "/apisix/admin" && !strings.HasPrefix(path, "/apisix/admin/") {
		writeHTML(w, http.StatusNotFound)
		return
	}
	h.Set("Content-Type", "application/json")
	if r.Method == http.MethodOptions && s.opt.CORS {
		h.Set("Access-Control-Allow-Methods", "POST, GET, PUT, OPTIONS, DELETE, PATCH")
		h.Set("Access-Control-Allow-Headers", "*")
		w.WriteHeader(http.StatusOK)
		return
	}
	if path == "/apisix/admin" || path == "/apisix/admin/" {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	switch r.Method {
	case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch:
	default:
		writeHTML(w, http.StatusNotFound)
		return
	}
	if _, ok := s.authorize(w, r); !ok {
		return
	}
	s.dispatch(w, r, strings.TrimPrefix(path, "/apisix/admin"))
}

// allowed applies allow_admin to the socket peer only; forwarding headers
// are ignored on purpose (CVE-2022-24112).
func (s *Server) allowed(r *http.Request) bool {
	if len(s.opt.Allow) == 0 {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.opt.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// authorize checks the admin key. Keys are compared as SHA-256 digests with
// subtle.ConstantTimeCompare against every configured key, so neither the
// key's length nor which key matched shows in the timing.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (Role, bool) {
	if !s.opt.KeyRequired {
		return RoleAdmin, true
	}
	// With a key required and none configured nothing is accepted: the
	// gateway always configures one (generated if need be), so this only
	// guards against wiring mistakes failing open.
	token := r.URL.Query().Get("api_key")
	if token == "" {
		token = r.Header.Get("X-API-KEY")
	}
	if token == "" {
		if c, err := r.Cookie("x_api_key"); err == nil {
			token = c.Value
		}
	}
	if token == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error_msg": "failed to check token", "description": "missing apikey"})
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	var role Role
	found := 0
	for _, k := range s.keyHashes {
		if subtle.ConstantTimeCompare(sum[:], k.sum[:]) == 1 && found == 0 {
			role = k.role
			found = 1
		}
	}
	if found == 0 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error_msg": "failed to check token", "description": "wrong apikey"})
		return "", false
	}
	if role != RoleAdmin && r.Method != http.MethodGet {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error_msg": "failed to check token", "description": "invalid method for role viewer"})
		return "", false
	}
	return role, true
}

// readBody reads the request body within APISIX's limit. ok is false when a
// response was already written.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > MaxBodyBytes {
		writeErr(w, http.StatusBadRequest, "invalid request body: request size "+itoa(r.ContentLength)+" is greater than the maximum size 1572864 allowed")
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return nil, false
	}
	if len(body) > MaxBodyBytes {
		writeErr(w, http.StatusBadRequest, "invalid request body: request size is greater than the maximum size 1572864 allowed")
		return nil, false
	}
	return body, true
}

// writeJSON writes v as JSON followed by a newline, as APISIX's
// core.response.exit does.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error_msg":"failed to encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error_msg": msg})
}

func writeNotFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]string{"message": "Key not found"})
}

// writePlain writes a plain-text body that APISIX still labels JSON.
func writePlain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// writeStoreErr maps a store failure: conflicts and backend trouble are
// 503 with the error text, as APISIX does for etcd errors.
func writeStoreErr(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrNotFound) {
		writeNotFound(w)
		return
	}
	if errors.Is(err, store.ErrConflict) {
		writeErr(w, http.StatusServiceUnavailable, "value changed before overwritten")
		return
	}
	writeErr(w, http.StatusServiceUnavailable, err.Error())
}

var htmlTitles = map[int]string{
	400: "400 Bad Request",
	403: "403 Forbidden",
	404: "404 Not Found",
	405: "405 Not Allowed",
	500: "500 Internal Server Error",
}

// writeHTML writes nginx's error page, which is what APISIX clients see
// for requests nginx itself refuses (allow_admin, unknown paths).
func writeHTML(w http.ResponseWriter, status int) {
	t := htmlTitles[status]
	body := "<html>\r\n<head><title>" + t + "</title></head>\r\n<body>\r\n<center><h1>" + t +
		"</h1></center>\r\n<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
