package engine

import "strconv"

// ErrorPageContentType is the Content-Type that goes with ErrorPage bodies.
const ErrorPageContentType = "text/html; charset=utf-8"

// errorTitles are nginx's status lines for its built-in error pages
// (ngx_http_special_response.c); APISIX clients match on these strings.
var errorTitles = map[int]string{
	301: "301 Moved Permanently",
	302: "302 Found",
	303: "303 See Other",
	307: "307 Temporary Redirect",
	308: "308 Permanent Redirect",
	400: "400 Bad Request",
	401: "401 Authorization Required",
	402: "402 Payment Required",
	403: "403 Forbidden",
	404: "404 Not Found",
	405: "405 Not Allowed",
	406: "406 Not Acceptable",
	408: "408 Request Time-out",
	409: "409 Conflict",
	410: "410 Gone",
	411: "411 Length Required",
	412: "412 Precondition Failed",
	413: "413 Request Entity Too Large",
	414: "414 Request-URI Too Large",
	415: "415 Unsupported Media Type",
	416: "416 Requested Range Not Satisfiable",
	417: "417 Expectation Failed",
	421: "421 Misdirected Request",
	429: "429 Too Many Requests",
	431: "431 Request Header Fields Too Large",
	500: "500 Internal Server Error",
	501: "501 Not Implemented",
	502: "502 Bad Gateway",
	503: "503 Service Temporarily Unavailable",
	504: "504 Gateway Time-out",
	505: "505 HTTP Version Not Supported",
	507: "507 Insufficient Storage",
}

// errorPages holds the rendered pages; built once, never written after.
var errorPages = func() map[int][]byte {
	m := make(map[int][]byte, len(errorTitles))
	for code, title := range errorTitles {
		m[code] = renderErrorPage(title)
	}
	return m
}()

func renderErrorPage(title string) []byte {
	return []byte("<html>\r\n" +
		"<head><title>" + title + "</title></head>\r\n" +
		"<body>\r\n" +
		"<center><h1>" + title + "</h1></center>\r\n" +
		"<hr><center>openresty</center>\r\n" +
		"<p><em>Powered by <a href=\"https://apisix.apache.org/\">APISIX</a>.</em></p></body>\r\n" +
		"</html>\r\n")
}

// ErrorPage returns the HTML body nginx/OpenResty (as shipped by APISIX)
// sends for status, byte for byte, to be served with ErrorPageContentType.
// The returned slice is shared: callers must not modify it. Statuses nginx
// has no page for get the same layout with the bare code as title.
func ErrorPage(status int) []byte {
	if p, ok := errorPages[status]; ok {
		return p
	}
	return renderErrorPage(strconv.Itoa(status))
}
