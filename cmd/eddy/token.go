package main

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// tokenEnv are the environment variables that hold the API bearer token,
// in the order they are read, when no token file is given. Every command
// (eddy node, ctl, run, savepoint) reads the same ones.
var tokenEnv = []string{"EDDY_TOKEN", "EDDY_API_TOKEN"}

// readToken returns the API bearer token: the trimmed text of file (named
// flag in errors), else the first non-empty $EDDY_TOKEN or
// $EDDY_API_TOKEN, else "" (none). A given file that is empty is an
// error. Errors never hold the token.
func readToken(flag, file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("%s %s is empty", flag, file)
		}
		return t, nil
	}
	for _, v := range tokenEnv {
		if t := strings.TrimSpace(os.Getenv(v)); t != "" {
			return t, nil
		}
	}
	return "", nil
}

// requireToken guards the writes (POST, PUT, DELETE, PATCH) of h, the
// HTTP API of eddy run (savepoints): they need "Authorization: Bearer
// <token>". With token "" (none configured) they are always refused, with
// a 401 that says how to configure one; the destructive endpoints are
// never open. GETs (/metrics, /healthz, listings) stay open.
func requireToken(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
			var msg string
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			switch {
			case token == "":
				msg = fmt.Sprintf("%s %s: this job has no API token, so savepoint requests are refused; "+
					"start eddy run with --api-token-file FILE (or $EDDY_TOKEN), e.g. FILE made by: openssl rand -hex 32 > FILE && chmod 600 FILE; "+
					"then eddy savepoint --token-file FILE (or $EDDY_TOKEN)", r.Method, r.URL.Path)
			case !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1:
				msg = "savepoint requests need the header \"Authorization: Bearer <token>\" with the job's API token (eddy savepoint --token-file FILE or $EDDY_TOKEN)"
			}
			if msg != "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="eddy"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
