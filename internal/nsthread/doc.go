// Package nsthread is the one place ghostd moves OS threads into other network namespaces (setns), never the main thread.
package nsthread
