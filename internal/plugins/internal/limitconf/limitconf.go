// Package limitconf holds the configuration pieces limit-req and limit-conn
// share: the redis and redis-cluster fields of their schemas, the decoding
// of a conf with APISIX's defaults, the rejection body and the counter
// table scoped to one instance. The counters themselves live in
// limit-count/limitkit. (limit-count keeps its own copy of the redis
// fields in its schema.go, with a redis-sentinel branch the others lack.)
package limitconf

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/limit-count/limitkit"
)

// redisFields are the redis policy fields (apisix/utils/redis-schema.lua).
const redisFields = `
        "redis_host": {"type": "string", "minLength": 2},
        "redis_port": {"type": "integer", "minimum": 1, "default": 6379},
        "redis_username": {"type": "string", "minLength": 1},
        "redis_password": {"type": "string", "minLength": 0},
        "redis_database": {"type": "integer", "minimum": 0, "default": 0},
        "redis_timeout": {"type": "integer", "minimum": 1, "default": 1000},
        "redis_ssl": {"type": "boolean", "default": false},
        "redis_ssl_verify": {"type": "boolean", "default": false},
        "redis_keepalive_timeout": {"type": "integer", "minimum": 1000, "default": 10000},
        "redis_keepalive_pool": {"type": "integer", "minimum": 1, "default": 100}`

// redisClusterFields are the redis-cluster policy fields.
const redisClusterFields = `
        "redis_cluster_nodes": {"type": "array", "minItems": 1,
            "items": {"type": "string", "minLength": 2, "maxLength": 100}},
        "redis_password": {"type": "string", "minLength": 0},
        "redis_timeout": {"type": "integer", "minimum": 1, "default": 1000},
        "redis_cluster_name": {"type": "string"},
        "redis_cluster_ssl": {"type": "boolean", "default": false},
        "redis_cluster_ssl_verify": {"type": "boolean", "default": false},
        "redis_keepalive_timeout": {"type": "integer", "minimum": 1000, "default": 10000},
        "redis_keepalive_pool": {"type": "integer", "minimum": 1, "default": 100}`

// keyTTL is limit-conn's extra field for both redis policies.
const keyTTL = `,
        "key_ttl": {"type": "integer", "default": 3600}`

const (
	ifRedis = `"if": {"properties": {"policy": {"enum": ["redis"]}}, "required": ["policy"]},
    "then": {"properties": {`
	elseIfCluster = `}, "required": ["redis_host"]},
    "else": {
        "if": {"properties": {"policy": {"enum": ["redis-cluster"]}}, "required": ["policy"]},
        "then": {"properties": {`
	endCluster = `}, "required": ["redis_cluster_nodes", "redis_cluster_name"]}
    }`
)

// RedisPolicies are the "if"/"then"/"else" members of a limit plugin's
// schema that require the redis fields when policy is "redis" and the
// redis-cluster fields when it is "redis-cluster" (limit-req). Each "if"
// also requires policy: the Lua validator fills in the default ("local")
// before evaluating it, ours does not, and an absent policy must not
// select redis.
const RedisPolicies = ifRedis + redisFields + elseIfCluster + redisClusterFields + endCluster

// RedisPoliciesKeyTTL is RedisPolicies with limit-conn's key_ttl added to
// both policies' fields.
const RedisPoliciesKeyTTL = ifRedis + redisFields + keyTTL + elseIfCluster + redisClusterFields + keyTTL + endCluster

// Decode unmarshals raw into conf, which holds APISIX's defaults; an
// absent conf, or the empty Lua table that arrives as [], keeps them all.
func Decode(raw json.RawMessage, conf any) error {
	if t := bytes.TrimSpace(raw); len(t) > 0 && !bytes.Equal(t, []byte("[]")) {
		if err := json.Unmarshal(raw, conf); err != nil {
			return fmt.Errorf("invalid conf: %w", err)
		}
	}
	return nil
}

// RejectBody is the body of a rejected request: {"error_msg": msg} when
// rejected_msg is set, otherwise nil for the standard error page.
func RejectBody(msg *string) any {
	if msg == nil {
		return nil
	}
	return map[string]string{"error_msg": *msg}
}

// Handle returns the instance's handle on its own counter table: the
// registry is shared by every instance of the plugin name (created with
// newRegistry) and the table is scoped by env's parent object and conf
// hash, so counters survive config swaps that do not touch the conf.
// It returns nil when env is nil (validation only).
func Handle[E any](env *plugin.BuildEnv, name string, newRegistry func() any) *limitkit.Handle[E] {
	if env == nil {
		return nil
	}
	reg := env.Shared.LoadOrStore(name, newRegistry).(*limitkit.Registry[E])
	return limitkit.NewHandle(reg, limitkit.Scope(name, env.Parent, env.ConfHash))
}
