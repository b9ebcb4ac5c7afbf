//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// seq.c walks the TCP sockets of the namespace the iterator was opened in
// and writes one fixed-size record per wanted socket: its cookie and the
// sequence-space state sock_diag does not expose. It only reads.
//
// Regenerate the objects with `make bpf-generate`.

#include "kernel_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define TCP_LISTEN 10
#define AF_INET6 10

// Record flags.
#define SEQ_F_TSTAMP_OK 0x1 // the connection negotiated TCP timestamps
#define SEQ_F_MD5 0x2       // the socket holds TCP-MD5 keys (tp->md5sig_info)
#define SEQ_F_AO 0x4        // the socket holds TCP-AO keys (tp->ao_info)
#define SEQ_F_USEC_TS 0x8   // TSval counts microseconds, not milliseconds

// net.ipv6.auto_flowlabels (IP6_AUTO_FLOW_LABEL_*).
#define AUTO_FLOW_LABEL_OFF 0
#define AUTO_FLOW_LABEL_OPTOUT 1
#define AUTO_FLOW_LABEL_FORCED 3

// seq_record is the wire format the Go decoder reads (probe/iter.go,
// seqRecordLen = 72 bytes, native byte order). Its length is its version:
// change both together, and grow it, never reorder it.
struct seq_record {
	__u64 cookie;
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 rcv_nxt;
	__u32 snd_wnd;
	__u32 rcv_wnd;
	__u32 ts_recent;
	__u32 tsoffset;
	__u8 state;
	__u8 snd_wscale;
	__u8 rcv_wscale;
	__u8 flags;
	// 40: routing and timers.
	__u32 mark;            // sk->sk_mark
	__u32 bound_dev_if;    // sk->sk_bound_dev_if (0: not bound)
	__u32 flow_label;      // the IPv6 flow label the socket's segments carry, host order
	__u32 txhash;          // sk->sk_txhash, which an automatic flow label derives from
	__u32 keepalive_time;  // jiffies; 0: the namespace's sysctl
	__u32 keepalive_intvl; // jiffies; 0: the namespace's sysctl
	__u32 user_timeout;    // TCP_USER_TIMEOUT in ms; 0: unset
	__u8 tos;              // inet->tos (IPv4 TOS, ECN bits included)
	__u8 tclass;           // np->tclass (IPv6 traffic class, ECN bits included)
	__u8 keepalive_probes; // 0: the namespace's sysctl
	__u8 reserved;
};

_Static_assert(sizeof(struct seq_record) == 72, "seq_record must stay 72 bytes");
// The offsets decodeSeqRecords reads (probe/iter.go).
_Static_assert(__builtin_offsetof(struct seq_record, cookie) == 0, "cookie moved");
_Static_assert(__builtin_offsetof(struct seq_record, snd_una) == 8, "snd_una moved");
_Static_assert(__builtin_offsetof(struct seq_record, snd_nxt) == 12, "snd_nxt moved");
_Static_assert(__builtin_offsetof(struct seq_record, rcv_nxt) == 16, "rcv_nxt moved");
_Static_assert(__builtin_offsetof(struct seq_record, snd_wnd) == 20, "snd_wnd moved");
_Static_assert(__builtin_offsetof(struct seq_record, rcv_wnd) == 24, "rcv_wnd moved");
_Static_assert(__builtin_offsetof(struct seq_record, ts_recent) == 28, "ts_recent moved");
_Static_assert(__builtin_offsetof(struct seq_record, tsoffset) == 32, "tsoffset moved");
_Static_assert(__builtin_offsetof(struct seq_record, state) == 36, "state moved");
_Static_assert(__builtin_offsetof(struct seq_record, snd_wscale) == 37, "snd_wscale moved");
_Static_assert(__builtin_offsetof(struct seq_record, rcv_wscale) == 38, "rcv_wscale moved");
_Static_assert(__builtin_offsetof(struct seq_record, flags) == 39, "flags moved");
_Static_assert(__builtin_offsetof(struct seq_record, mark) == 40, "mark moved");
_Static_assert(__builtin_offsetof(struct seq_record, bound_dev_if) == 44, "bound_dev_if moved");
_Static_assert(__builtin_offsetof(struct seq_record, flow_label) == 48, "flow_label moved");
_Static_assert(__builtin_offsetof(struct seq_record, txhash) == 52, "txhash moved");
_Static_assert(__builtin_offsetof(struct seq_record, keepalive_time) == 56, "keepalive_time moved");
_Static_assert(__builtin_offsetof(struct seq_record, keepalive_intvl) == 60, "keepalive_intvl moved");
_Static_assert(__builtin_offsetof(struct seq_record, user_timeout) == 64, "user_timeout moved");
_Static_assert(__builtin_offsetof(struct seq_record, tos) == 68, "tos moved");
_Static_assert(__builtin_offsetof(struct seq_record, tclass) == 69, "tclass moved");
_Static_assert(__builtin_offsetof(struct seq_record, keepalive_probes) == 70, "keepalive_probes moved");
_Static_assert(__builtin_offsetof(struct seq_record, reserved) == 71, "reserved moved");

// The bit numbers of INET_FLAGS_AUTOFLOWLABEL_SET and INET_FLAGS_AUTOFLOWLABEL
// in inet->inet_flags (Linux 6.6+). They sit in an anonymous enum, out of
// CO-RE's reach, so the loader looks them up in the kernel's BTF and sets
// them here; >= 64 means unknown, and the namespace's default applies.
volatile const __u32 autolabel_set_bit = 64;
volatile const __u32 autolabel_bit = 64;

// wanted holds the cookies of the sockets to report. Go fills it before a
// pass and clears it after; entries are allocated on insert.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 18);
	__type(key, __u64);
	__type(value, __u8);
} wanted SEC(".maps");

// flow_label fills the IPv6 traffic class and the flow label the kernel puts
// on this socket's segments: the socket's own label, else one derived from
// sk_txhash when automatic labels apply (ip6_make_flowlabel in
// include/net/ipv6.h, with ip6_autoflowlabel for the socket's choice).
static __always_inline void flow_label(struct seq_record *rec, struct inet_sock *inet, struct sock *sk)
{
	struct ipv6_pinfo *np = inet->pinet6;
	struct net *net = sk->__sk_common.skc_net.net;
	__u32 label, hash;
	__u8 mode;
	bool autolabel;

	if (!np || !net)
		return;
	rec->tclass = np->tclass;
	label = bpf_ntohl(np->flow_label) & 0xfffff;
	mode = net->ipv6.sysctl.auto_flowlabels;
	autolabel = mode == AUTO_FLOW_LABEL_OPTOUT || mode == AUTO_FLOW_LABEL_FORCED;
	if (autolabel_set_bit < 64 && autolabel_bit < 64) {
		unsigned long flags = inet->inet_flags;

		if ((flags >> autolabel_set_bit) & 1)
			autolabel = (flags >> autolabel_bit) & 1;
	}
	if (!label && mode != AUTO_FLOW_LABEL_OFF && (autolabel || mode == AUTO_FLOW_LABEL_FORCED)) {
		// The kernel rotates the hash by 16 and keeps the 20 bits that
		// land in the label when the word is stored in network order.
		hash = rec->txhash;
		hash = (hash << 16) | (hash >> 16);
		label = bpf_ntohl(hash) & 0xfffff;
		if (net->ipv6.sysctl.flowlabel_state_ranges)
			label |= 0x80000; // IPV6_FLOWLABEL_STATELESS_FLAG
	}
	rec->flow_label = label;
}

SEC("iter/tcp")
int dump_seq(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct seq_file *seq = ctx->meta->seq;
	struct seq_record rec = {};
	struct tcp_sock *tp;
	struct inet_sock *inet;
	struct sock *sk;
	__u64 cookie;

	if (!skc)
		return 0;
	// TIME_WAIT and request sockets are not full sockets: no tcp_sock.
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	if (skc->skc_state == TCP_LISTEN)
		return 0;

	inet = &tp->inet_conn.icsk_inet;
	sk = &inet->sk;

	cookie = bpf_get_socket_cookie(tp);
	if (!bpf_map_lookup_elem(&wanted, &cookie))
		return 0;

	rec.cookie = cookie;
	rec.snd_una = tp->snd_una;
	rec.snd_nxt = tp->snd_nxt;
	rec.rcv_nxt = tp->rcv_nxt;
	rec.snd_wnd = tp->snd_wnd;
	rec.rcv_wnd = tp->rcv_wnd;
	rec.ts_recent = tp->rx_opt.ts_recent;
	rec.tsoffset = tp->tsoffset;
	rec.state = skc->skc_state;
	rec.snd_wscale = BPF_CORE_READ_BITFIELD(tp, rx_opt.snd_wscale);
	rec.rcv_wscale = BPF_CORE_READ_BITFIELD(tp, rx_opt.rcv_wscale);
	if (BPF_CORE_READ_BITFIELD(tp, rx_opt.tstamp_ok))
		rec.flags |= SEQ_F_TSTAMP_OK;
	if (bpf_core_field_exists(tp->tcp_usec_ts) && BPF_CORE_READ_BITFIELD(tp, tcp_usec_ts))
		rec.flags |= SEQ_F_USEC_TS;
	if (bpf_core_field_exists(tp->md5sig_info) && tp->md5sig_info)
		rec.flags |= SEQ_F_MD5;
	if (bpf_core_field_exists(tp->ao_info) && tp->ao_info)
		rec.flags |= SEQ_F_AO;

	rec.mark = sk->sk_mark;
	rec.bound_dev_if = skc->skc_bound_dev_if;
	rec.txhash = sk->sk_txhash;
	rec.tos = inet->tos;
	rec.keepalive_time = tp->keepalive_time;
	rec.keepalive_intvl = tp->keepalive_intvl;
	rec.keepalive_probes = tp->keepalive_probes;
	rec.user_timeout = tp->inet_conn.icsk_user_timeout;
	if (skc->skc_family == AF_INET6)
		flow_label(&rec, inet, sk);

	bpf_seq_write(seq, &rec, sizeof(rec));
	return 0;
}

// bpf_seq_write is GPL-only.
char __license[] SEC("license") = "Dual MIT/GPL";
