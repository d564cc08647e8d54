package limitcount

// redisProps are the redis policy fields (apisix/utils/redis-schema.lua).
const redisProps = `{
    "properties": {
        "redis_host": {"type": "string", "minLength": 2},
        "redis_port": {"type": "integer", "minimum": 1, "default": 6379},
        "redis_username": {"type": "string", "minLength": 1},
        "redis_password": {"type": "string", "minLength": 0},
        "redis_database": {"type": "integer", "minimum": 0, "default": 0},
        "redis_timeout": {"type": "integer", "minimum": 1, "default": 1000},
        "redis_ssl": {"type": "boolean", "default": false},
        "redis_ssl_verify": {"type": "boolean", "default": false},
        "redis_keepalive_timeout": {"type": "integer", "minimum": 1000, "default": 10000},
        "redis_keepalive_pool": {"type": "integer", "minimum": 1, "default": 100}
    },
    "required": ["redis_host"]
}`

// redisClusterProps are the redis-cluster policy fields.
const redisClusterProps = `{
    "properties": {
        "redis_cluster_nodes": {"type": "array", "minItems": 1,
            "items": {"type": "string", "minLength": 2, "maxLength": 100}},
        "redis_password": {"type": "string", "minLength": 0},
        "redis_timeout": {"type": "integer", "minimum": 1, "default": 1000},
        "redis_cluster_name": {"type": "string"},
        "redis_cluster_ssl": {"type": "boolean", "default": false},
        "redis_cluster_ssl_verify": {"type": "boolean", "default": false},
        "redis_keepalive_timeout": {"type": "integer", "minimum": 1000, "default": 10000},
        "redis_keepalive_pool": {"type": "integer", "minimum": 1, "default": 100}
    },
    "required": ["redis_cluster_nodes", "redis_cluster_name"]
}`

// redisSentinelProps are the redis-sentinel policy fields.
const redisSentinelProps = `{
    "properties": {
        "redis_sentinels": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "properties": {
                "host": {"type": "string", "minLength": 2},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535}
            },
            "required": ["host", "port"],
            "additionalProperties": false
        }},
        "redis_master_name": {"type": "string", "minLength": 1},
        "redis_role": {"type": "string", "enum": ["master", "slave"], "default": "master"},
        "redis_connect_timeout": {"type": "integer", "minimum": 1, "default": 1000},
        "redis_read_timeout": {"type": "integer", "minimum": 1, "default": 1000},
        "redis_keepalive_timeout": {"type": "integer", "minimum": 1, "default": 60000},
        "redis_database": {"type": "integer", "minimum": 0, "default": 0},
        "redis_username": {"type": "string", "minLength": 1},
        "redis_password": {"type": "string", "minLength": 0},
        "sentinel_username": {"type": "string", "minLength": 1},
        "sentinel_password": {"type": "string", "minLength": 0}
    },
    "required": ["redis_sentinels", "redis_master_name"]
}`

// intOrString is APISIX's count/time_window type: a positive integer or a
// variable template.
const intOrString = `{"oneOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}]}`

// schema transcribes apisix/plugins/limit-count/init.lua. Each "if" also
// requires policy: the Lua validator fills in the default ("local") before
// evaluating it, ours does not, and an absent policy must not select redis. The top-level
// oneOf (count+time_window | rules) is checked in New instead, because
// APISIX rewrites its "matches both" message into
// "count/time_window and rules cannot be specified at the same time".
const schema = `{
    "type": "object",
    "properties": {
        "count": ` + intOrString + `,
        "time_window": ` + intOrString + `,
        "window_type": {"type": "string", "enum": ["fixed", "sliding"], "default": "fixed"},
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "count": ` + intOrString + `,
                    "time_window": ` + intOrString + `,
                    "key": {"type": "string"},
                    "header_prefix": {"type": "string", "description": "prefix for rate limit headers"}
                },
                "required": ["count", "time_window", "key"]
            }
        },
        "group": {"type": "string"},
        "key": {"type": "string", "default": "remote_addr"},
        "key_type": {"type": "string", "enum": ["var", "var_combination", "constant"], "default": "var"},
        "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
        "rejected_msg": {"type": "string", "minLength": 1},
        "policy": {"type": "string", "enum": ["local", "redis", "redis-cluster", "redis-sentinel"], "default": "local"},
        "allow_degradation": {"type": "boolean", "default": false},
        "show_limit_quota_header": {"type": "boolean", "default": true},
        "sync_interval": {"type": "number", "default": -1}
    },
    "if": {"properties": {"policy": {"enum": ["redis"]}}, "required": ["policy"]},
    "then": ` + redisProps + `,
    "else": {
        "if": {"properties": {"policy": {"enum": ["redis-cluster"]}}, "required": ["policy"]},
        "then": ` + redisClusterProps + `,
        "else": {
            "if": {"properties": {"policy": {"enum": ["redis-sentinel"]}}, "required": ["policy"]},
            "then": ` + redisSentinelProps + `
        }
    }
}`

// metadataSchema is limit-count's plugin_metadata schema.
const metadataSchema = `{
    "type": "object",
    "properties": {
        "limit_header": {"type": "string", "default": "X-RateLimit-Limit"},
        "remaining_header": {"type": "string", "default": "X-RateLimit-Remaining"},
        "reset_header": {"type": "string", "default": "X-RateLimit-Reset"}
    }
}`
