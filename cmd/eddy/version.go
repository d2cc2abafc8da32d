package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// versionText is what eddy --version prints: the module version, the VCS
// revision, its commit time and whether the tree had local modifications
// (from runtime/debug.ReadBuildInfo; "unknown" when the binary carries no
// build information, e.g. built outside a repository), and the Go version.
//
//	eddy (devel) revision 62dbf7a1c3e4 2026-12-02T19:01:11Z modified=false go1.24.1 linux/amd64
func versionText() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "eddy unknown (no build information)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	rev := settings["vcs.revision"]
	if rev == "" {
		rev = "unknown"
	} else if len(rev) > 12 {
		rev = rev[:12]
	}
	at := settings["vcs.time"]
	if at == "" {
		at = "unknown"
	}
	modified := settings["vcs.modified"]
	if modified == "" {
		modified = "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "unknown"
	}
	platform := strings.TrimSpace(settings["GOOS"] + "/" + settings["GOARCH"])
	return fmt.Sprintf("eddy %s revision %s %s modified=%s %s %s", v, rev, at, modified, bi.GoVersion, platform)
}
