// Package ui is the web UI every eddy node serves: one HTML page, one
// script and one style sheet, embedded in the binary (no build step, no
// external resources). The page polls the node's JSON API about every
// second (GET /v1/cluster/members, /v1/cluster/raft, /v1/jobs,
// /v1/partitions, /v1/checkpoints, /v1/leases/history) and renders the
// cluster, jobs, partitions, checkpoints, lease history and recent errors.
// It is read-only except for one action, cancelling a job, which sends the
// API token typed into the page (kept in the tab's sessionStorage) as
// "Authorization: Bearer <token>"; the API authorizes it like any write.
//
// Every response carries a Content-Security-Policy that allows only the
// node's own script and style (no inline script, no framing).
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// Files are the embedded assets by name: "index.html" (served at /) and
// the files served under /ui/.
var Files fs.FS

func init() {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err)
	}
	Files = sub
}

// CSP is the Content-Security-Policy of every UI response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// Handler serves GET / (the page) and GET /ui/{file} (its script and style
// sheet); any other path, and /ui/ itself, is 404 (no listing). Responses
// are marked Cache-Control: no-cache, so that a node upgrade shows at
// once.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if r.URL.Path != "/" {
			rest, ok := strings.CutPrefix(r.URL.Path, "/ui/")
			if !ok || rest == "" || rest == "index.html" || path.Clean(rest) != rest || strings.Contains(rest, "/") {
				http.NotFound(w, r)
				return
			}
			name = rest
		}
		if st, err := fs.Stat(Files, name); err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, Files, name)
	})
}
