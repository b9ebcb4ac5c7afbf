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

#include "ghostd_types.h"

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct seq_file;

struct net;

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
	int skc_bound_dev_if;
	possible_net_t skc_net;
};

struct sock {
	struct sock_common __sk_common;
	u32 sk_mark;
	u32 sk_txhash;
};

struct netns_sysctl_ipv6 {
	u8 auto_flowlabels;
	u8 flowlabel_state_ranges;
};

struct netns_ipv6 {
	struct netns_sysctl_ipv6 sysctl;
};

struct net {
	struct netns_ipv6 ipv6;
};

struct ipv6_pinfo {
	__be32 flow_label;
	u8 tclass;
};

struct inet_sock {
	struct sock sk;
	struct ipv6_pinfo *pinet6;
	unsigned long inet_flags;
	__u8 tos;
};

struct inet_connection_sock {
	struct inet_sock icsk_inet;
	u32 icsk_user_timeout;
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

struct tcp_md5sig_info;
struct tcp_ao_info;

/*
 * tcp_usec_ts (6.7+), md5sig_info (CONFIG_TCP_MD5SIG) and ao_info (6.7+,
 * CONFIG_TCP_AO) may be absent from the running kernel: seq.c reads them
 * only under bpf_core_field_exists.
 */
struct tcp_sock {
	struct inet_connection_sock inet_conn;
	u32 rcv_nxt;
	u32 snd_nxt;
	u32 snd_una;
	u32 snd_wnd;
	u32 rcv_wnd;
	u32 tsoffset;
	u8 tcp_usec_ts : 1;
	u32 keepalive_time;
	u32 keepalive_intvl;
	u8 keepalive_probes;
	struct tcp_options_received rx_opt;
	struct tcp_md5sig_info *md5sig_info;
	struct tcp_ao_info *ao_info;
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
