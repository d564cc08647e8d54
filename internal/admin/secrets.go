package admin

import (
	"strings"

	"github.com/sluice-gw/sluice/internal/resource"
)

// isRef reports whether a secret value is a reference resolved at runtime
// rather than a literal (APISIX's $secret:// and $env:// forms).
func isRef(v string) bool {
	return strings.HasPrefix(v, "$secret://") || strings.HasPrefix(v, "$env://")
}

// encrypt replaces SSL private keys and plugin encrypt_fields with their
// encrypted form, as APISIX stores them (reference/apisix-core.md §4.2).
func (s *Server) encrypt(k *resource.Kind, obj map[string]any) error {
	return s.transform(k, obj, func(v string) (string, error) {
		if isRef(v) {
			return v, nil
		}
		return s.opt.Keyring.Encrypt(v)
	})
}

// decrypt reverses encrypt; values that do not decrypt (written before
// encryption was enabled, or plain PEM) are left as they are.
func (s *Server) decrypt(k *resource.Kind, obj map[string]any) error {
	return s.transform(k, obj, func(v string) (string, error) {
		if isRef(v) || strings.HasPrefix(v, "---") {
			return v, nil
		}
		if p, err := s.opt.Keyring.Decrypt(v); err == nil {
			return p, nil
		}
		return v, nil
	})
}

func (s *Server) transform(k *resource.Kind, obj map[string]any, f func(string) (string, error)) error {
	if s.opt.Keyring == nil || k == nil {
		return nil
	}
	if k.Name == "ssls" {
		if v, ok := obj["key"].(string); ok {
			e, err := f(v)
			if err != nil {
				return err
			}
			obj["key"] = e
		}
		if ks, ok := obj["keys"].([]any); ok {
			for i, x := range ks {
				if v, ok := x.(string); ok {
					e, err := f(v)
					if err != nil {
						return err
					}
					ks[i] = e
				}
			}
		}
		return nil
	}
	plugins, _ := obj["plugins"].(map[string]any)
	for name, conf := range plugins {
		def, ok := s.opt.Plugins.Lookup(name)
		if !ok || len(def.EncryptFields) == 0 {
			continue
		}
		cm, ok := conf.(map[string]any)
		if !ok {
			continue
		}
		for _, field := range def.EncryptFields {
			path := strings.Split(field, ".")
			m := cm
			for _, p := range path[:len(path)-1] {
				m, _ = m[p].(map[string]any)
				if m == nil {
					break
				}
			}
			if m == nil {
				continue
			}
			last := path[len(path)-1]
			if v, ok := m[last].(string); ok {
				e, err := f(v)
				if err != nil {
					return err
				}
				m[last] = e
			}
		}
	}
	return nil
}
