package proxycache

import "time"

// SetForTest stores a body-only object under key.
func SetForTest(s *Store, key string, body []byte) bool {
	o := &Object{Status: 200, Body: body}
	return s.set([]byte(key), o, objectSize(o), time.Minute, time.Now())
}

// HasForTest reports whether key is stored.
func HasForTest(s *Store, key string) bool {
	_, _, ok := s.get([]byte(key), time.Now())
	return ok
}
