// Package authkit holds the steps the consumer-auth plugins (basic-auth,
// key-auth, jwt-auth) share once they have looked a credential up: the
// 401 rejection with its WWW-Authenticate challenge, and the fallback to
// anonymous_consumer.
package authkit

import "github.com/sluice-gw/sluice/internal/plugin"

// Message is the JSON body of an auth rejection: {"message": "..."}.
type Message struct {
	Message string `json:"message"`
}

// Reject answers 401 with the prebuilt WWW-Authenticate challenge and
// {"message": msg}.
func Reject(r *plugin.Request, challenge []string, msg string) {
	r.W.Header()["Www-Authenticate"] = challenge
	r.Exit(401, Message{msg})
}

// Anonymous handles a failed authentication as APISIX does: without an
// anonymous consumer configured (name == "") it rejects with errMsg; with
// one that does not exist it rejects with "Invalid user authorization";
// otherwise it returns that consumer for the caller to attach. ok is false
// when the request was rejected.
func Anonymous(r *plugin.Request, name string, challenge []string, errMsg string) (c *plugin.Consumer, ok bool) {
	if name == "" {
		Reject(r, challenge, errMsg)
		return nil, false
	}
	if c, ok = r.Env.Consumers.ByName(name); !ok {
		Reject(r, challenge, "Invalid user authorization")
		return nil, false
	}
	return c, true
}
