/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */
/*
 * The few kernel types owners.c reads, declared by hand instead of a full
 * vmlinux.h. Every struct carries preserve_access_index, so field offsets
 * are relocated against the running kernel's BTF at load time (CO-RE): only
 * the names and the field types matter here, not the layout. Checked
 * against the BTF of Linux 6.18.
 */
#ifndef GHOSTD_OWNERS_MIN_H
#define GHOSTD_OWNERS_MIN_H

#include "ghostd_types.h"

typedef int pid_t;

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct seq_file;

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

struct nsproxy {
	struct net *net_ns;
};

struct task_struct {
	pid_t tgid;
	struct nsproxy *nsproxy;
};

struct inode {
	unsigned long i_ino;
};

struct file {
	struct inode *f_inode;
};

struct socket;

struct bpf_iter_meta {
	struct seq_file *seq;
	u64 session_id;
	u64 seq_num;
};

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	u32 fd;
	struct file *file;
};

#pragma clang attribute pop

#endif /* GHOSTD_OWNERS_MIN_H */
