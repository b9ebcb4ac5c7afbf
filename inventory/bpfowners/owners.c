//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// owners.c walks every open file of every process (a task_file iterator:
// one pass in the kernel instead of a readlink per fd under /proc) and
// writes one fixed-size record per file that is a socket: the process, the
// fd, the socket's inode and the process's network namespace. Threads that
// share their process's file table are visited once, as the process. It
// only reads. It does not look at the socket's family: that would read one
// more cache line per socket, which costs more than the records of the
// other families (measured: ~20 % of a pass).
//
// Regenerate the Go bindings and the objects with `make bpf-generate`.

#include "kernel_min.h"
#include <bpf/bpf_helpers.h>

typedef int pid_t;

// task_struct as kernel_min.h declares it, and the thread group id only this
// program reads: a CO-RE flavor (the ___ suffix is dropped when relocating)
// adds the field without changing the other programs' objects.
struct task_struct___owners {
	pid_t tgid;
	struct nsproxy *nsproxy;
} __attribute__((preserve_access_index));

// fd_record is the wire format the Go decoder reads (lister.go, recordLen
// = 24 bytes, native byte order). Its length is its version: change both
// together.
struct fd_record {
	__u64 ino;   // the socket's inode, as /proc/PID/fd's "socket:[N]"
	__u32 tgid;  // the process (its thread group id, in the initial pid namespace)
	__u32 fd;    // the file descriptor
	__u32 netns; // inode of the process's network namespace; 0 while it exits
	__u32 reserved;
};

_Static_assert(sizeof(struct fd_record) == 24, "fd_record must stay 24 bytes");

SEC("iter/task_file")
int socket_fds(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct___owners *task = (void *)ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	struct fd_record rec = {
		.ino = file->f_inode->i_ino,
		.tgid = task->tgid,
		.fd = ctx->fd,
	};
	struct nsproxy *nsp = task->nsproxy;
	if (nsp)
		rec.netns = nsp->net_ns->ns.inum;
	bpf_seq_write(seq, &rec, sizeof(rec));
	return 0;
}

// bpf_seq_write is GPL-only.
char __license[] SEC("license") = "Dual MIT/GPL";
