// Package bench holds pfrouter's benchmarks over large synthetic
// organizations (see README.md). The organizations come from package
// bench/orggen; the code measured lives in routing, linkstate and directory.
// It has no non-test code besides this comment.
package bench
