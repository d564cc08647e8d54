package resource

import "strings"

// The resource schemas below transcribe apache/apisix apisix/schema_def.lua
// (3.18) into JSON. Property order follows the Lua source because the
// validator reports the first failing property in document order. Shared
// definitions are spliced in with @NAME@ placeholders.

const defID = `{"anyOf":[{"type":"string","minLength":1,"maxLength":64,"pattern":"^[a-zA-Z0-9-_.]+$"},{"type":"integer","minimum":1}]}`

const hostPattern = `^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$`

const defHost = `{"type":"string","pattern":"` + hostPattern + `"}`

const ipv4Def = `([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])`

const ipv6Def = `([a-fA-F0-9]{0,4}:){1,8}(:[a-fA-F0-9]{0,4}){0,8}([a-fA-F0-9]{0,4})?`

const defIPList = `[
 {"title":"IPv4","type":"string","format":"ipv4"},
 {"title":"IPv4/CIDR","type":"string","pattern":"^` + ipv4Def + `/([12]?[0-9]|3[0-2])$"},
 {"title":"IPv6","type":"string","format":"ipv6"},
 {"title":"IPv6/CIDR","type":"string","pattern":"^` + ipv6Def + `/[0-9]{1,3}$"}]`

const defRemoteAddr = `{"description":"client IP","type":"string","anyOf":` + defIPList + `}`

const defURI = `{"type":"string","pattern":"^[^\\/]+:\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])(:\\d+)?"}`

const defLabels = `{"description":"key/value pairs to specify attributes","type":"object","patternProperties":{".*":{"description":"value of label","type":"string","pattern":"^\\S+$","maxLength":256,"minLength":1}}}`

const defName = `{"type":"string","maxLength":256,"minLength":1}`

const defDesc = `{"type":"string","maxLength":256}`

const defTimestamp = `{"type":"integer"}`

const defTimeout = `{"type":"object","properties":{
 "connect":{"type":"number","exclusiveMinimum":0},
 "send":{"type":"number","exclusiveMinimum":0},
 "read":{"type":"number","exclusiveMinimum":0}},
 "required":["connect","send","read"]}`

const methodEnum = `["GET","POST","PUT","DELETE","PATCH","HEAD","OPTIONS","CONNECT","TRACE","PURGE"]`

const defMethod = `{"description":"HTTP method","type":"string","enum":` + methodEnum + `}`

const defActive = `{"type":"object","properties":{
 "type":{"type":"string","enum":["http","https","tcp"],"default":"http"},
 "timeout":{"type":"number","default":1},
 "concurrency":{"type":"integer","default":10},
 "host":@HOST@,
 "port":{"type":"integer","minimum":1,"maximum":65535},
 "http_method":{"type":"string","enum":` + methodEnum + `,"default":"GET"},
 "http_path":{"type":"string","default":"/"},
 "http_req_body":{"type":"string","default":""},
 "https_verify_certificate":{"type":"boolean","default":true},
 "healthy":{"type":"object","properties":{
   "interval":{"type":"integer","minimum":1,"default":1},
   "http_statuses":{"type":"array","minItems":1,"items":{"type":"integer","minimum":200,"maximum":599},"uniqueItems":true,"default":[200,302]},
   "successes":{"type":"integer","minimum":1,"maximum":254,"default":2}}},
 "unhealthy":{"type":"object","properties":{
   "interval":{"type":"integer","minimum":1,"default":1},
   "http_statuses":{"type":"array","minItems":1,"items":{"type":"integer","minimum":200,"maximum":599},"uniqueItems":true,"default":[429,404,500,501,502,503,504,505]},
   "http_failures":{"type":"integer","minimum":1,"maximum":254,"default":5},
   "tcp_failures":{"type":"integer","minimum":1,"maximum":254,"default":2},
   "timeouts":{"type":"integer","minimum":1,"maximum":254,"default":3}}},
 "req_headers":{"type":"array","minItems":1,"items":{"type":"string","uniqueItems":true}}}}`

const defPassive = `{"type":"object","properties":{
 "type":{"type":"string","enum":["http","https","tcp"],"default":"http"},
 "healthy":{"type":"object","properties":{
   "http_statuses":{"type":"array","minItems":1,"items":{"type":"integer","minimum":200,"maximum":599},"uniqueItems":true,"default":[200,201,202,203,204,205,206,207,208,226,300,301,302,303,304,305,306,307,308]},
   "successes":{"type":"integer","minimum":0,"maximum":254,"default":5}}},
 "unhealthy":{"type":"object","properties":{
   "http_statuses":{"type":"array","minItems":1,"items":{"type":"integer","minimum":200,"maximum":599},"uniqueItems":true,"default":[429,500,503]},
   "tcp_failures":{"type":"integer","minimum":0,"maximum":254,"default":2},
   "timeouts":{"type":"integer","minimum":0,"maximum":254,"default":7},
   "http_failures":{"type":"integer","minimum":0,"maximum":254,"default":5}}}}}`

const defChecks = `{"type":"object","properties":{"active":@ACTIVE@,"passive":@PASSIVE@},
 "anyOf":[{"required":["active"]},{"required":["active","passive"]}]}`

const defNodes = `{"anyOf":[
 {"type":"object","patternProperties":{".*":{"description":"weight of node","type":"integer","minimum":0}}},
 {"type":"array","items":{"type":"object","properties":{
   "host":@HOST@,
   "port":{"description":"port of node","type":"integer","minimum":1,"maximum":65535},
   "weight":{"description":"weight of node","type":"integer","minimum":0},
   "priority":{"description":"priority of node","type":"integer","default":0},
   "metadata":{"description":"metadata of node","type":"object"}},
  "required":["host","weight"]}}]}`

const defCert = `{"type":"string","minLength":128,"maxLength":65536}`

const defKey = `{"type":"string","minLength":64,"maxLength":65536}`

const schemaUpstream = `{"type":"object","properties":{
 "id":@ID@,"name":@NAME@,"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "nodes":@NODES@,
 "retries":{"type":"integer","minimum":0},
 "retry_timeout":{"type":"number","minimum":0},
 "timeout":@TIMEOUT@,
 "tls":{"type":"object","properties":{
   "client_cert_id":@ID@,"client_cert":@CERT@,"client_key":@KEY@,
   "verify":{"type":"boolean","description":"Turn on server certificate verification, currently only kafka upstream is supported","default":false}},
  "dependencies":{
   "client_cert":{"required":["client_key"]},
   "client_key":{"required":["client_cert"]},
   "client_cert_id":{"not":{"required":["client_cert","client_key"]}}}},
 "keepalive_pool":{"type":"object","properties":{
   "size":{"type":"integer","default":320,"minimum":1},
   "idle_timeout":{"type":"number","default":60,"minimum":0},
   "requests":{"type":"integer","default":1000,"minimum":1}}},
 "type":{"description":"algorithms of load balancing","type":"string","default":"roundrobin"},
 "checks":@CHECKS@,
 "hash_on":{"type":"string","default":"vars","enum":["vars","header","cookie","consumer","vars_combinations"]},
 "key":{"description":"the key of chash for dynamic load balancing","type":"string"},
 "scheme":{"default":"http","enum":["grpc","grpcs","http","https","tcp","tls","udp","kafka"],"description":"The scheme of the upstream. For L7 proxy, it can be one of grpc/grpcs/http/https. For L4 proxy, it can be one of tcp/tls/udp. For specific protocols, it can be kafka."},
 "discovery_type":{"description":"discovery type","type":"string"},
 "discovery_args":{"type":"object","properties":{"namespace_id":{"description":"namespace id","type":"string"},"group_name":{"description":"group name","type":"string"}}},
 "pass_host":{"description":"mod of host passing","type":"string","enum":["pass","node","rewrite"],"default":"pass"},
 "upstream_host":@HOST@,
 "service_name":{"type":"string","maxLength":256,"minLength":1}},
 "oneOf":[{"required":["nodes"]},{"required":["service_name","discovery_type"]}],
 "additionalProperties":false}`

const schemaHashVars = `{"type":"string","pattern":"^((uri|server_name|server_addr|request_uri|remote_port|remote_addr|query_string|host|hostname|mqtt_client_id)|arg_[0-9a-zA-z_-]+)$"}`

const schemaHashHeader = `{"type":"string","pattern":"^[a-zA-Z0-9-_]+$"}`

const schemaRoute = `{"type":"object","properties":{
 "id":@ID@,"name":@NAME@,"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "uri":{"type":"string","minLength":1,"maxLength":4096},
 "uris":{"type":"array","items":{"description":"HTTP uri","type":"string"},"minItems":1,"uniqueItems":true},
 "priority":{"type":"integer","default":0},
 "methods":{"type":"array","items":@METHOD@,"uniqueItems":true},
 "host":@HOST@,
 "hosts":{"type":"array","items":@HOST@,"minItems":1,"uniqueItems":true},
 "remote_addr":@RADDR@,
 "remote_addrs":{"type":"array","items":@RADDR@,"minItems":1,"uniqueItems":true},
 "timeout":@TIMEOUT@,
 "vars":{"type":"array"},
 "filter_func":{"type":"string","minLength":10,"pattern":"^function"},
 "script":{"type":"string","minLength":10,"maxLength":102400},
 "script_id":@ID@,
 "plugins":{"type":"object"},
 "plugin_config_id":@ID@,
 "upstream":@UPSTREAM@,
 "service_id":@ID@,
 "upstream_id":@ID@,
 "enable_websocket":{"description":"enable websocket for request","type":"boolean"},
 "status":{"description":"route status, 1 to enable, 0 to disable","type":"integer","enum":[1,0],"default":1}},
 "allOf":[
  {"oneOf":[{"required":["uri"]},{"required":["uris"]}]},
  {"oneOf":[{"not":{"anyOf":[{"required":["host"]},{"required":["hosts"]}]}},{"required":["host"]},{"required":["hosts"]}]},
  {"oneOf":[{"not":{"anyOf":[{"required":["remote_addr"]},{"required":["remote_addrs"]}]}},{"required":["remote_addr"]},{"required":["remote_addrs"]}]}],
 "anyOf":[
  {"required":["plugins","uri"]},{"required":["upstream","uri"]},{"required":["upstream_id","uri"]},{"required":["service_id","uri"]},
  {"required":["plugins","uris"]},{"required":["upstream","uris"]},{"required":["upstream_id","uris"]},{"required":["service_id","uris"]},
  {"required":["script","uri"]},{"required":["script","uris"]}],
 "not":{"anyOf":[{"required":["script","plugins"]},{"required":["script","plugin_config_id"]}]},
 "additionalProperties":false}`

const schemaService = `{"type":"object","properties":{
 "id":@ID@,"name":@NAME@,"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "plugins":{"type":"object"},
 "upstream":@UPSTREAM@,
 "upstream_id":@ID@,
 "script":{"type":"string","minLength":10,"maxLength":102400},
 "enable_websocket":{"description":"enable websocket for request","type":"boolean"},
 "hosts":{"type":"array","items":@HOST@,"minItems":1,"uniqueItems":true}},
 "additionalProperties":false}`

const schemaConsumer = `{"type":"object","properties":{
 "id":@ID@,
 "username":{"type":"string","minLength":1,"maxLength":256,"pattern":"^[a-zA-Z0-9_\\-]+$"},
 "desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "group_id":@ID@,
 "plugins":{"type":"object"}},
 "required":["username"],
 "additionalProperties":false}`

const schemaCredential = `{"type":"object","properties":{
 "id":{"oneOf":[@ID@,{"type":"string","minLength":15,"maxLength":128,"pattern":"^[a-zA-Z0-9-_]+/credentials/[a-zA-Z0-9-_.]+$"}]},
 "name":@NAME@,"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "plugins":{"type":"object","maxProperties":1}},
 "additionalProperties":false}`

const schemaSSL = `{"type":"object","properties":{
 "id":@ID@,"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "type":{"description":"ssl certificate type, server to server certificate, client to client certificate for upstream","type":"string","default":"server","enum":["server","client"]},
 "cert":@CERT@,
 "key":@KEY@,
 "sni":{"type":"string","pattern":"` + hostPattern + `"},
 "snis":{"type":"array","items":{"type":"string","pattern":"` + hostPattern + `"},"minItems":1},
 "certs":{"type":"array","items":@CERT@},
 "keys":{"type":"array","items":@KEY@},
 "client":{"type":"object","properties":{
   "ca":@CERT@,
   "depth":{"type":"integer","minimum":0,"default":1},
   "skip_mtls_uri_regex":{"type":"array","minItems":1,"uniqueItems":true,"items":{"description":"uri regular expression to skip mtls","type":"string"}}},
  "required":["ca"]},
 "status":{"description":"ssl status, 1 to enable, 0 to disable","type":"integer","enum":[1,0],"default":1},
 "ssl_protocols":{"description":"set ssl protocols","type":"array","maxItems":3,"uniqueItems":true,"items":{"enum":["TLSv1.1","TLSv1.2","TLSv1.3"]}}},
 "if":{"properties":{"type":{"enum":["server"]}}},
 "then":{"oneOf":[{"required":["sni","key","cert"]},{"required":["snis","key","cert"]}]},
 "else":{"required":["key","cert"]},
 "additionalProperties":false}`

const schemaProto = `{"type":"object","properties":{
 "id":@ID@,"name":@NAME@,"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "content":{"type":"string","minLength":1,"maxLength":1048576}},
 "required":["content"],
 "additionalProperties":false}`

const schemaGlobalRule = `{"type":"object","properties":{
 "id":@ID@,"create_time":@TS@,"update_time":@TS@,
 "plugins":{"type":"object"}},
 "required":["id","plugins"],
 "additionalProperties":false}`

const schemaStreamRoute = `{"type":"object","properties":{
 "id":@ID@,"name":@NAME@,"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "remote_addr":@RADDR@,
 "server_addr":{"description":"server IP","type":"string","anyOf":` + defIPList + `},
 "server_port":{"description":"server port","type":"integer","minimum":1,"maximum":65535},
 "sni":{"description":"server name indication","type":"string","pattern":"` + hostPattern + `"},
 "upstream":@UPSTREAM@,
 "upstream_id":@ID@,
 "service_id":@ID@,
 "plugins":{"type":"object"},
 "protocol":{"type":"object","properties":{
   "name":{"type":"string"},
   "superior_id":@ID@,
   "conf":{"description":"protocol-specific configuration","type":"object"},
   "logger":{"type":"array","items":{"properties":{
     "name":{"type":"string"},
     "filter":{"description":"logger filter rules","type":"array"},
     "conf":{"description":"logger plugin configuration","type":"object"}},
    "dependencies":{"name":["conf"]},
    "additionalProperties":false}}},
  "required":["name"]}},
 "additionalProperties":false}`

const schemaPluginConfig = `{"type":"object","properties":{
 "id":@ID@,"name":{"type":"string"},"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "plugins":{"type":"object"}},
 "required":["id","plugins"],
 "additionalProperties":false}`

const schemaConsumerGroup = `{"type":"object","properties":{
 "id":@ID@,"name":@NAME@,"desc":@DESC@,"labels":@LABELS@,"create_time":@TS@,"update_time":@TS@,
 "plugins":{"type":"object"}},
 "required":["id","plugins"],
 "additionalProperties":false}`

const schemaPluginMetadata = `{"type":"object"}`

const schemaSecretVault = `{"type":"object","properties":{
 "uri":@URI@,"prefix":{"type":"string"},"token":{"type":"string"},"namespace":{"type":"string"}},
 "required":["uri","prefix","token"]}`

const schemaSecretAWS = `{"type":"object","properties":{
 "access_key_id":{"type":"string"},"secret_access_key":{"type":"string"},"session_token":{"type":"string"},
 "region":{"type":"string","default":"us-east-1"},"endpoint_url":@URI@},
 "required":["access_key_id","secret_access_key"]}`

const schemaSecretGCP = `{"type":"object","properties":{
 "auth_config":{"type":"object","properties":{
   "client_email":{"type":"string"},"private_key":{"type":"string"},"project_id":{"type":"string"},
   "token_uri":{"type":"string","default":"https://oauth2.googleapis.com/token"},
   "scope":{"type":"array","items":{"type":"string"},"default":["https://www.googleapis.com/auth/cloud-platform"]},
   "entries_uri":{"type":"string","default":"https://secretmanager.googleapis.com/v1"}},
  "required":["client_email","private_key","project_id"]},
 "ssl_verify":{"type":"boolean","default":true},
 "auth_file":{"type":"string"}},
 "oneOf":[{"required":["auth_config"]},{"required":["auth_file"]}]}`

// metaSchema is the "_meta" property injected into every plugin schema
// (schema_def.lua plugin_injected_schema).
const metaSchema = `{"type":"object","properties":{
 "disable":{"type":"boolean"},
 "error_response":{"oneOf":[{"type":"string"},{"type":"object"}]},
 "priority":{"description":"priority of plugins by customized order","type":"integer"},
 "filter":{"description":"filter determines whether the plugin needs to be executed at runtime","type":"array"},
 "pre_function":{"description":"function to be executed in each phase before execution of plugins. The pre_function will have access to two arguments: ` + "`conf` and `ctx`" + `.","type":"string"}},
 "additionalProperties":false}`

// expand splices the shared definitions into a schema template.
func expand(s string) string {
	r := strings.NewReplacer(
		"@UPSTREAM@", expandUpstream(),
	)
	return common().Replace(r.Replace(s))
}

func common() *strings.Replacer {
	return strings.NewReplacer(
		"@ID@", defID,
		"@NAME@", defName,
		"@DESC@", defDesc,
		"@LABELS@", defLabels,
		"@TS@", defTimestamp,
		"@HOST@", defHost,
		"@RADDR@", defRemoteAddr,
		"@TIMEOUT@", defTimeout,
		"@METHOD@", defMethod,
		"@CERT@", defCert,
		"@KEY@", defKey,
		"@URI@", defURI,
	)
}

func expandUpstream() string {
	s := strings.NewReplacer(
		"@NODES@", defNodes,
		"@CHECKS@", strings.NewReplacer("@ACTIVE@", defActive, "@PASSIVE@", defPassive).Replace(defChecks),
	).Replace(schemaUpstream)
	return common().Replace(s)
}
