//go:build race

package sinks

// raceEnabled is true in builds with the race detector.
const raceEnabled = true
