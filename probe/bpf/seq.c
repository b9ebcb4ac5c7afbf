//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// seq.c walks the TCP sockets of the namespace the iterator was opened in
// and writes one fixed-size record per wanted socket: its cookie and the
// sequence-space state sock_diag does not expose. It only reads.
//
// Regenerate the Go bindings and the object with `make bpf-generate`.

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define TCP_LISTEN 10

// Record flags.
#define SEQ_F_TSTAMP_OK 0x1

// seq_record is the wire format the Go decoder reads (probe/iter.go,
// seqRecordLen = 40 bytes, native byte order). Change both together.
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
};

_Static_assert(sizeof(struct seq_record) == 40, "seq_record must stay 40 bytes");

// wanted holds the cookies of the sockets to report. Go fills it before a
// pass and clears it after; entries are allocated on insert.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 18);
	__type(key, __u64);
	__type(value, __u8);
} wanted SEC(".maps");

SEC("iter/tcp")
int dump_seq(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct seq_file *seq = ctx->meta->seq;
	struct seq_record rec = {};
	struct tcp_sock *tp;
	__u64 cookie;

	if (!skc)
		return 0;
	// TIME_WAIT and request sockets are not full sockets: no tcp_sock.
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	if (skc->skc_state == TCP_LISTEN)
		return 0;

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

	bpf_seq_write(seq, &rec, sizeof(rec));
	return 0;
}

// bpf_seq_write is GPL-only.
char __license[] SEC("license") = "Dual MIT/GPL";
