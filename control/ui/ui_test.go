package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHandlerServesAssetsWithCSP(t *testing.T) {
	h := Handler()
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html", `<script src="/ui/app.js"`},
		{"/ui/app.js", "javascript", "function poll()"},
		{"/ui/style.css", "text/css", ".badge"},
	} {
		resp, body := get(t, h, c.path)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contains, strings.Contains(body, c.contains))
		}
		if resp.Header.Get("Content-Security-Policy") != CSP || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: security headers %v", c.path, resp.Header)
		}
	}
	for _, p := range []string{"/ui/", "/ui/nope.js", "/ui/../ui.go", "/ui/index.html", "/index.html", "/ui//app.js", "/assets/app.js"} {
		if resp, _ := get(t, h, p); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestNoInlineScriptOrHTMLInjection: the page works under its CSP (no
// inline script or style) and the script never parses data as HTML.
func TestNoInlineScriptOrHTMLInjection(t *testing.T) {
	_, page := get(t, Handler(), "/")
	if strings.Contains(page, "<script>") || strings.Contains(page, "<style") || regexp.MustCompile(`\s(on[a-z]+|style)=`).MatchString(page) {
		t.Error("index.html has inline script or style, which the CSP blocks")
	}
	_, js := get(t, Handler(), "/ui/app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s: data must go into the DOM as text", bad)
		}
	}
}
