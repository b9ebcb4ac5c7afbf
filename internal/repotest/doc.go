// Package repotest checks the repository itself: the documents the code and the docs cite exist.
package repotest
