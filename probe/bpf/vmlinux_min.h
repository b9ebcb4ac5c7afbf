/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */
/*
 * The few kernel types seq.c reads, declared by hand instead of a full
 * vmlinux.h. Every struct carries preserve_access_index, so field offsets
 * and bitfield positions are relocated against the running kernel's BTF at
 * load time (CO-RE): only the names and the field types matter here, not
 * the layout. Checked against `bpftool btf dump file /sys/kernel/btf/vmlinux
 * format c` on Linux 6.18.
 */
#ifndef GHOSTD_VMLINUX_MIN_H
#define GHOSTD_VMLINUX_MIN_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __u32 uid_t;
typedef _Bool bool;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct seq_file;

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
};

struct tcp_options_received {
	u32 ts_recent;
	u16 saw_tstamp : 1;
	u16 tstamp_ok : 1;
	u16 dsack : 1;
	u16 wscale_ok : 1;
	u16 sack_ok : 3;
	u16 smc_ok : 1;
	u16 snd_wscale : 4;
	u16 rcv_wscale : 4;
};

struct tcp_sock {
	u32 rcv_nxt;
	u32 snd_nxt;
	u32 snd_una;
	u32 snd_wnd;
	u32 rcv_wnd;
	u32 tsoffset;
	struct tcp_options_received rx_opt;
};

struct bpf_iter_meta {
	struct seq_file *seq;
	u64 session_id;
	u64 seq_num;
};

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	uid_t uid;
};

#pragma clang attribute pop

#endif /* GHOSTD_VMLINUX_MIN_H */
