/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */
/*
 * The kernel types the project's BPF programs read (probe/bpf/seq.c,
 * inventory/bpfwalk/walk.c and inventory/bpfowners/owners.c), declared by hand instead of a full vmlinux.h;
 * both compile with -I pointing here (scripts/bpf-compile.sh, make
 * bpf-generate). Every struct carries preserve_access_index, so field offsets
 * and bitfield positions are relocated against the running kernel's BTF at
 * load time (CO-RE): only the names and the field types matter here, not the
 * layout or the order, and a field a program does not read costs nothing.
 * Checked against `bpftool btf dump file /sys/kernel/btf/vmlinux format c`
 * on Linux 6.18.
 */
#ifndef GHOSTD_KERNEL_MIN_H
#define GHOSTD_KERNEL_MIN_H

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
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct seq_file;

struct hlist_nulls_node {
	struct hlist_nulls_node *next, **pprev;
};

struct hlist_nulls_head {
	struct hlist_nulls_node *first;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
};

struct ns_common {
	unsigned int inum;
};

struct inet_ehash_bucket {
	struct hlist_nulls_head chain;
};

struct inet_listen_hashbucket {
	struct hlist_nulls_head nulls_head;
};

/* The TCP socket tables (include/net/inet_hashtables.h): established,
 * TIME_WAIT and request sockets in ehash, listeners in lhash2. */
struct inet_hashinfo {
	struct inet_ehash_bucket *ehash;
	unsigned int ehash_mask;
	unsigned int lhash2_mask;
	struct inet_listen_hashbucket *lhash2;
};

struct inet_timewait_death_row {
	struct inet_hashinfo *hashinfo;
};

struct netns_ipv4 {
	struct inet_timewait_death_row tcp_death_row;
};

struct netns_sysctl_ipv6 {
	u8 auto_flowlabels;
	u8 flowlabel_state_ranges;
};

struct netns_ipv6 {
	struct netns_sysctl_ipv6 sysctl;
};

struct net {
	struct ns_common ns;
	struct netns_ipv4 ipv4;
	struct netns_ipv6 ipv6;
};

struct nsproxy {
	struct net *net_ns;
};

struct task_struct {
	struct nsproxy *nsproxy;
};

typedef struct {
	struct net *net;
} possible_net_t;

typedef struct {
	__s64 counter;
} atomic64_t;

struct sock_common {
	union {
		__u64 skc_addrpair;
		struct {
			__be32 skc_daddr;
			__be32 skc_rcv_saddr;
		};
	};
	union {
		__u32 skc_portpair;
		struct {
			__be16 skc_dport;
			__u16 skc_num;
		};
	};
	unsigned short skc_family;
	volatile unsigned char skc_state;
	int skc_bound_dev_if;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
	struct hlist_nulls_node skc_nulls_node;
};

struct hlist_node {
	struct hlist_node *next, **pprev;
};

struct timer_list {
	struct hlist_node entry;
	unsigned long expires;
};

typedef struct {
	uid_t val;
} kuid_t;

struct inode {
	unsigned long i_ino;
};

struct socket {
	short type;
};

/* socket_alloc holds a struct socket and its inode side by side. */
struct socket_alloc {
	struct socket socket;
	struct inode vfs_inode;
};

/* sk_ino (6.18+) caches the socket's inode number; older kernels reach it
 * through sk_socket. */
struct sock {
	struct sock_common __sk_common;
	struct socket *sk_socket;
	struct timer_list sk_timer;
	kuid_t sk_uid;
	u16 sk_protocol;
	u32 sk_ack_backlog;
	u32 sk_max_ack_backlog;
	unsigned long sk_ino;
	u32 sk_mark;
	u32 sk_txhash;
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
	struct timer_list icsk_retransmit_timer;
	unsigned long icsk_timeout; /* before 6.15; icsk_retransmit_timer.expires since */
	__u32 icsk_rto;
	__u8 icsk_ca_state : 5;
	__u8 icsk_retransmits;
	__u8 icsk_pending;
	__u8 icsk_backoff;
	__u8 icsk_probes_out;
	u32 icsk_user_timeout;
	struct {
		__u32 lrcvtime;
		__u16 rcv_mss;
	} icsk_ack;
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
	u32 copied_seq;
	u32 snd_nxt;
	u32 snd_una;
	u32 write_seq;
	u32 snd_wnd;
	u32 rcv_wnd;
	u32 mss_cache;
	u32 snd_cwnd;
	u32 packets_out;
	u32 lost_out;
	u32 retrans_out;
	u32 lsndtime;
	u32 rcv_tstamp;
	u32 srtt_us;
	u32 mdev_us;
	u32 total_retrans;
	u32 tsoffset;
	u32 keepalive_time;
	u32 keepalive_intvl;
	u8 keepalive_probes;
	u64 bytes_acked;
	u64 bytes_received;
	u8 ecn_flags;
	u8 tcp_usec_ts : 1;
	struct tcp_options_received rx_opt;
	struct tcp_md5sig_info *md5sig_info;
	struct tcp_ao_info *ao_info;
};

struct inet_timewait_sock {
	struct sock_common __tw_common;
	unsigned char tw_substate;
	struct timer_list tw_timer;
};

struct request_sock {
	struct sock_common __req_common;
	u8 num_retrans;
	struct timer_list rsk_timer;
};

/* The context of an iter/tcp program (seq.c). */
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

/* The context of an iter/task_file program (owners.c). */
struct file {
	struct inode *f_inode;
};

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	u32 fd;
	struct file *file;
};

#pragma clang attribute pop

#endif /* GHOSTD_KERNEL_MIN_H */
