//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// walk.c lists the TCP sockets of every network namespace that shares the
// kernel's TCP hash tables in one pass over those tables, instead of one
// sock_diag dump per namespace (each of which walks all of them).
//
// walk_hash is a raw tracepoint program that is never attached: Go runs it
// with BPF_PROG_TEST_RUN, which holds rcu_read_lock around it. It walks the
// listener buckets, then the established buckets (established, TIME_WAIT and
// request sockets), of the table its root netns uses, as the kernel's own
// lockless lookups do, and writes one fixed-size record per socket of the
// wanted namespaces to a ring buffer. Each run starts at a bucket index and
// stops before the ring buffer could overflow; Go drains it and runs again
// from the returned index. Every kernel read goes through a bpf_rdonly_cast
// pointer, whose loads cannot fault: the walk only reads. A socket freed and
// reused under it (TCP sockets are SLAB_TYPESAFE_BY_RCU) is caught by a
// second look at its cookie and namespace and dropped; one moved to another
// chain can be missed or listed twice, as by a sock_diag dump.
//
// set_root records the table of the caller's netns; covers tells whether the
// caller's netns uses that table (namespaces created while
// net.ipv4.tcp_child_ehash_entries was set have their own established
// table; their listeners stay in the shared listener table, so the walk
// lists those, and callers must ignore them).
//
// give_cookie gives every TCP socket that changes state a socket cookie (as
// a sock_diag dump or SO_COOKIE would): a socket's identity, which a walk
// can only read.
//
// Regenerate the objects with `make bpf-generate`.

#include "kernel_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

#define TCP_SYN_RECV 3
#define TCP_TIME_WAIT 6
#define TCP_LISTEN 10
#define TCP_NEW_SYN_RECV 12

// icsk_pending values (include/net/inet_connection_sock.h).
#define ICSK_TIME_RETRANS 1
#define ICSK_TIME_PROBE0 3
#define ICSK_TIME_LOSS_PROBE 5
#define ICSK_TIME_REO_TIMEOUT 6

// tcpi_options bits (include/uapi/linux/tcp.h).
#define TCPI_OPT_TIMESTAMPS 1
#define TCPI_OPT_SACK 2
#define TCPI_OPT_WSCALE 4
#define TCPI_OPT_ECN 8
#define TCPI_OPT_ECN_SEEN 16
#define TCPI_OPT_USEC_TS 64

// tp->ecn_flags bits (include/net/tcp.h).
#define TCP_ECN_OK 1
#define TCP_ECN_SEEN 8

// Record flags.
#define WALK_F_INFO 0x1   // a full socket: the tcp_info fields are filled
#define WALK_F_LISTEN 0x2 // found in a listener bucket

// The longest chain one bucket may have; a longer one is counted in
// stats[STAT_TRUNCATED] and the caller falls back to sock_diag.
#define MAX_CHAIN 256
// The ring buffer: a run stops when less than MARGIN is left, so each run
// emits about 2 400 records. User space maps its data pages twice (they
// wrap), and all of them count in ghostd's resident size from the start:
// 2 MiB cost 4 MiB of RSS; 512 KiB walk 400 000 sockets as fast.
#define RINGBUF_SIZE (512 << 10)
#define DONE 0xffffffff

// walk_record is the wire format the Go decoder reads
// (inventory/bpfwalk/record.go, RecordLen = 184 bytes, native byte order
// except the addresses and ports, which keep the kernel's network order).
// Its length is its version: change both together, and never reorder it
// at the same length (adding or dropping a field changes the length). Times are raw jiffies; the decoder converts them with the
// kernel's HZ, as tcp_info and inet_diag do.
struct walk_record {
	__u64 cookie;    // 0: the socket has none yet
	__u64 now;       // jiffies when the record was written
	__u64 bytes_acked;
	__u64 bytes_received;
	__u32 netns;      // inode of the socket's network namespace
	__u32 inode;      // socket inode (0: no struct socket)
	__u32 uid;        // in the initial user namespace
	__u32 ifindex;    // skc_bound_dev_if
	__u32 timer_left; // jiffies until the pending timer fires (0: none or past)
	__u32 rqueue;
	__u32 wqueue;
	__u32 rto; // jiffies
	__u32 snd_mss;
	__u32 rcv_mss;
	__u32 unacked;
	__u32 lost;
	__u32 retrans_out;
	__u32 lsndtime;   // tcp_jiffies32 of the last data sent
	__u32 lrcvtime;   // tcp_jiffies32 of the last data received
	__u32 rcv_tstamp; // tcp_jiffies32 of the last ACK received
	__u32 srtt_us;    // << 3
	__u32 mdev_us;    // << 2
	__u32 snd_cwnd;
	__u32 total_retrans;
	__u32 snd_wnd;
	__u32 rcv_wnd;
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 rcv_nxt;
	__u8 family;
	__u8 state;
	__u8 timer;   // idiag_timer
	__u8 retrans; // idiag_retrans
	__u8 ca_state;
	__u8 retransmits;
	__u8 probes;
	__u8 backoff;
	__u8 options;
	__u8 snd_wscale;
	__u8 rcv_wscale;
	__u8 flags;
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u32 reserved;
};

_Static_assert(sizeof(struct walk_record) == 184, "walk_record must stay 184 bytes");
_Static_assert(__builtin_offsetof(struct walk_record, netns) == 32, "netns moved");
_Static_assert(__builtin_offsetof(struct walk_record, rcv_nxt) == 128, "rcv_nxt moved");
_Static_assert(__builtin_offsetof(struct walk_record, family) == 132, "family moved");
_Static_assert(__builtin_offsetof(struct walk_record, flags) == 143, "flags moved");
_Static_assert(__builtin_offsetof(struct walk_record, src) == 144, "src moved");
_Static_assert(__builtin_offsetof(struct walk_record, dst) == 160, "dst moved");
_Static_assert(__builtin_offsetof(struct walk_record, sport) == 176, "sport moved");
_Static_assert(__builtin_offsetof(struct walk_record, reserved) == 180, "reserved moved");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RINGBUF_SIZE);
} records SEC(".maps");

// Room left for one bucket's records before a run stops.
#define MARGIN (MAX_CHAIN * (sizeof(struct walk_record) + 8))

// stats: [STAT_ROOT] the hashinfo set_root found (never leaves the kernel
// but as a comparison), [STAT_TRUNCATED] chains cut at MAX_CHAIN,
// [STAT_LOST] records the ring buffer refused.
#define STAT_ROOT 0
#define STAT_TRUNCATED 1
#define STAT_LOST 2
#define STAT_FILTER 3 // set: emit only the namespaces in want
#define STAT_RACED 4  // records dropped: the socket was freed and reused under the walk
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_add(__u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &key);

	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline struct inet_hashinfo *current_hashinfo(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, nsproxy, net_ns, ipv4.tcp_death_row.hashinfo);
}

SEC("raw_tp/sys_enter")
int set_root(void *ctx)
{
	__u32 key = STAT_ROOT;
	__u64 *v = bpf_map_lookup_elem(&stats, &key);
	struct inet_hashinfo *h = current_hashinfo();

	if (!v || !h)
		return 0;
	*v = (__u64)(unsigned long)h;
	return 1;
}

SEC("raw_tp/sys_enter")
int covers(void *ctx)
{
	__u32 key = STAT_ROOT;
	__u64 *v = bpf_map_lookup_elem(&stats, &key);

	if (!v || !*v)
		return 2;
	return *v == (__u64)(unsigned long)current_hashinfo();
}

SEC("tp_btf/inet_sock_set_state")
int give_cookie(u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];

	if (sk && sk->sk_protocol == IPPROTO_TCP)
		bpf_get_socket_cookie(sk);
	return 0;
}

// bpf_rdonly_cast (6.2+) turns an address into a read-only pointer to a
// kernel type: loads through it cannot fault (they read zero instead), and
// the verifier checks each against the kernel's BTF.
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define CAST(type, p) ((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))

struct walk_state {
	__u8 *buf;  // the copy variant's scratch buffer
	__u64 node; // the chain's current node, as an address (nulls: odd)
	__u64 now;
	__u64 lhash2;
	__u64 ehash;
	__u32 start;
	__u32 next;
	__u32 nlisten;
	__u32 total;
	__u32 listen;
	__u32 stopped;
	__u32 filter;
};

// want holds the inodes of the namespaces whose sockets the caller wants
// when stats[STAT_FILTER] is set; the walk still visits every socket, but
// copies out only those.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u32);
	__type(value, __u8);
} want SEC(".maps");

// scratch holds one socket the copy variant copied out of the kernel.
#define SCRATCH 8192
struct scratch_buf {
	__u8 b[SCRATCH];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_buf);
} scratch SEC(".maps");

static __always_inline __u32 left(unsigned long expires, __u64 now)
{
	long d = (long)(expires - (unsigned long)now);

	return d > 0 ? (__u32)d : 0;
}

// fill_full fills the fields of a full TCP socket from tp: a cast pointer,
// or with copy the socket copied into the scratch buffer, whose pointer
// fields must then be followed with bpf_probe_read_kernel.
static __always_inline void fill_full(struct walk_record *rec, struct tcp_sock *tp, const bool copy)
{
	struct inet_connection_sock *icsk = &tp->inet_conn;
	struct sock *sk = &icsk->icsk_inet.sk;
	struct socket *sock;
	unsigned long expires;
	__u8 pending;

	if (bpf_core_field_exists(sk->sk_ino)) {
		rec->inode = (__u32)sk->sk_ino;
	} else {
		sock = sk->sk_socket;
		if (sock && copy)
			rec->inode = (__u32)BPF_CORE_READ((struct socket_alloc *)sock, vfs_inode.i_ino);
		else if (sock)
			rec->inode = (__u32)CAST(struct socket_alloc, sock)->vfs_inode.i_ino;
	}
	rec->uid = sk->sk_uid.val;

	// The timer, as inet_sk_diag_fill reports it.
	if (bpf_core_field_exists(icsk->icsk_timeout))
		expires = icsk->icsk_timeout;
	else
		expires = icsk->icsk_retransmit_timer.expires;
	pending = icsk->icsk_pending;
	if (pending == ICSK_TIME_RETRANS || pending == ICSK_TIME_REO_TIMEOUT || pending == ICSK_TIME_LOSS_PROBE) {
		rec->timer = 1;
		rec->retrans = icsk->icsk_retransmits;
		rec->timer_left = left(expires, rec->now);
	} else if (pending == ICSK_TIME_PROBE0) {
		rec->timer = 4;
		rec->retrans = icsk->icsk_probes_out;
		rec->timer_left = left(expires, rec->now);
	} else if (sk->sk_timer.entry.pprev) {
		rec->timer = 2;
		rec->retrans = icsk->icsk_probes_out;
		rec->timer_left = left(sk->sk_timer.expires, rec->now);
	}

	// Queues, as tcp_diag_get_info reports them; unacked as tcp_get_info.
	if (rec->state == TCP_LISTEN) {
		rec->rqueue = sk->sk_ack_backlog;
		rec->wqueue = sk->sk_max_ack_backlog;
		rec->unacked = sk->sk_ack_backlog;
	} else {
		int rq = (int)(tp->rcv_nxt - tp->copied_seq);

		rec->rqueue = rq > 0 ? rq : 0;
		rec->wqueue = tp->write_seq - tp->snd_una;
		rec->unacked = tp->packets_out;
	}

	// The tcp_info fields, raw (tcp_get_info).
	rec->flags |= WALK_F_INFO;
	rec->ca_state = BPF_CORE_READ_BITFIELD(icsk, icsk_ca_state);
	rec->retransmits = icsk->icsk_retransmits;
	rec->probes = icsk->icsk_probes_out;
	rec->backoff = icsk->icsk_backoff;
	if (BPF_CORE_READ_BITFIELD(tp, rx_opt.tstamp_ok))
		rec->options |= TCPI_OPT_TIMESTAMPS;
	if (BPF_CORE_READ_BITFIELD(tp, rx_opt.sack_ok))
		rec->options |= TCPI_OPT_SACK;
	if (BPF_CORE_READ_BITFIELD(tp, rx_opt.wscale_ok)) {
		rec->options |= TCPI_OPT_WSCALE;
		rec->snd_wscale = BPF_CORE_READ_BITFIELD(tp, rx_opt.snd_wscale);
		rec->rcv_wscale = BPF_CORE_READ_BITFIELD(tp, rx_opt.rcv_wscale);
	}
	if (tp->ecn_flags & TCP_ECN_OK)
		rec->options |= TCPI_OPT_ECN;
	if (tp->ecn_flags & TCP_ECN_SEEN)
		rec->options |= TCPI_OPT_ECN_SEEN;
	if (bpf_core_field_exists(tp->tcp_usec_ts) && BPF_CORE_READ_BITFIELD(tp, tcp_usec_ts))
		rec->options |= TCPI_OPT_USEC_TS;
	rec->rto = icsk->icsk_rto;
	rec->snd_mss = tp->mss_cache;
	rec->rcv_mss = icsk->icsk_ack.rcv_mss;
	rec->lost = tp->lost_out;
	rec->retrans_out = tp->retrans_out;
	rec->lsndtime = tp->lsndtime;
	rec->lrcvtime = icsk->icsk_ack.lrcvtime;
	rec->rcv_tstamp = tp->rcv_tstamp;
	rec->srtt_us = tp->srtt_us;
	rec->mdev_us = tp->mdev_us;
	rec->snd_cwnd = tp->snd_cwnd;
	rec->total_retrans = tp->total_retrans;
	rec->bytes_acked = tp->bytes_acked;
	rec->bytes_received = tp->bytes_received;
	rec->snd_wnd = tp->snd_wnd;
	rec->rcv_wnd = tp->rcv_wnd;
	rec->snd_una = tp->snd_una;
	rec->snd_nxt = tp->snd_nxt;
	rec->rcv_nxt = tp->rcv_nxt;
}

// same_socket reports whether the socket at addr still has the given cookie
// and namespace.
static __always_inline bool same_socket(__u64 addr, __u64 cookie, __u32 netns, const bool copy)
{
	struct sock_common *skc;
	struct net *net;
	__u64 c = 0;
	__u32 ino = 0;

	if (copy) {
		skc = (struct sock_common *)addr;
		if (bpf_core_read(&c, sizeof(c), &skc->skc_cookie.counter) ||
		    bpf_core_read(&net, sizeof(net), &skc->skc_net.net))
			return false;
		if (net)
			ino = BPF_CORE_READ(net, ns.inum);
	} else {
		skc = CAST(struct sock_common, addr);
		c = (__u64)skc->skc_cookie.counter;
		net = skc->skc_net.net;
		if (net)
			ino = net->ns.inum;
	}
	return c == cookie && ino == netns;
}

// emit writes the record of the socket at addr, if its namespace is wanted.
// The cast variant reads the socket where it is; the copy variant (kernels
// without bpf_rdonly_cast) copies it into the scratch buffer first.
static __always_inline void emit(struct walk_state *st, __u64 addr, const bool copy)
{
	struct sock_common *skc;
	struct walk_record *rec;
	struct net *net;
	__u8 state, family;
	__u32 netns = 0;

	if (copy) {
		if (bpf_probe_read_kernel(st->buf, bpf_core_type_size(struct sock_common), (void *)addr))
			return;
		skc = (struct sock_common *)st->buf;
	} else {
		skc = CAST(struct sock_common, addr);
	}
	family = (__u8)skc->skc_family;
	if (family != AF_INET && family != AF_INET6)
		return;
	net = skc->skc_net.net;
	if (net && copy)
		netns = BPF_CORE_READ(net, ns.inum);
	else if (net)
		netns = net->ns.inum;
	if (st->filter && !bpf_map_lookup_elem(&want, &netns))
		return;
	state = skc->skc_state;
	if (copy) {
		long err;

		if (state == TCP_TIME_WAIT)
			err = bpf_probe_read_kernel(st->buf, bpf_core_type_size(struct inet_timewait_sock), (void *)addr);
		else if (state == TCP_NEW_SYN_RECV)
			err = bpf_probe_read_kernel(st->buf, bpf_core_type_size(struct request_sock), (void *)addr);
		else
			err = bpf_probe_read_kernel(st->buf, bpf_core_type_size(struct tcp_sock), (void *)addr);
		if (err)
			return;
	}

	rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
	if (!rec) {
		stat_add(STAT_LOST, 1);
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->now = st->now;
	rec->netns = netns;
	rec->family = family;
	rec->state = state;
	rec->flags = st->listen ? WALK_F_LISTEN : 0;
	rec->cookie = (__u64)skc->skc_cookie.counter;
	rec->ifindex = skc->skc_bound_dev_if;
	rec->sport = bpf_htons(skc->skc_num);
	rec->dport = skc->skc_dport;
	if (family == AF_INET6) {
		__u32 *src = (__u32 *)rec->src, *dst = (__u32 *)rec->dst;

		src[0] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[0];
		src[1] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[1];
		src[2] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[2];
		src[3] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[3];
		dst[0] = skc->skc_v6_daddr.in6_u.u6_addr32[0];
		dst[1] = skc->skc_v6_daddr.in6_u.u6_addr32[1];
		dst[2] = skc->skc_v6_daddr.in6_u.u6_addr32[2];
		dst[3] = skc->skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		*(__u32 *)rec->src = skc->skc_rcv_saddr;
		*(__u32 *)rec->dst = skc->skc_daddr;
	}

	if (state == TCP_TIME_WAIT) {
		// inet_twsk_diag_fill: the substate, the TIME_WAIT timer.
		struct inet_timewait_sock *tw = copy ? (struct inet_timewait_sock *)st->buf : CAST(struct inet_timewait_sock, addr);

		rec->state = tw->tw_substate;
		rec->timer = 3;
		rec->timer_left = left(tw->tw_timer.expires, st->now);
	} else if (state == TCP_NEW_SYN_RECV) {
		// inet_req_diag_fill: SYN_RECV, the SYN-ACK retransmit timer.
		struct request_sock *req = copy ? (struct request_sock *)st->buf : CAST(struct request_sock, addr);

		rec->state = TCP_SYN_RECV;
		rec->timer = 1;
		rec->retrans = req->num_retrans;
		rec->timer_left = left(req->rsk_timer.expires, st->now);
	} else {
		fill_full(rec, copy ? (struct tcp_sock *)st->buf : CAST(struct tcp_sock, addr), copy);
	}

	// As the kernel's lockless lookups do, check that the socket is still
	// the one the record began with: freed and reused meanwhile (possibly
	// in another namespace), it has another cookie or namespace now. Such a
	// record is dropped; the socket's next walk finds it settled.
	if (!same_socket(addr, rec->cookie, netns, copy)) {
		bpf_ringbuf_discard(rec, 0);
		stat_add(STAT_RACED, 1);
		return;
	}
	bpf_ringbuf_submit(rec, 0);
}

static __always_inline long chain_step(struct walk_state *st, const bool copy)
{
	__u64 node = st->node;

	if (node & 1) // a nulls marker ends the chain
		return 1;
	emit(st, node - bpf_core_field_offset(struct sock_common, skc_nulls_node), copy);
	// hlist_nulls_node.next, read as an address (a pointer loaded through
	// a cast could not be tested for the nulls bit).
	if (bpf_probe_read_kernel(&st->node, sizeof(st->node),
				  (void *)(node + bpf_core_field_offset(struct hlist_nulls_node, next))))
		return 1; // unreadable: left even, so counted as truncated
	return 0;
}

static long chain_step_cast(__u64 i, struct walk_state *st) { return chain_step(st, false); }
static long chain_step_copy(__u64 i, struct walk_state *st) { return chain_step(st, true); }

static __always_inline long bucket_step(__u64 i, struct walk_state *st, const bool copy)
{
	__u32 idx = st->start + (__u32)i;
	__u64 head;

	if (idx >= st->total)
		return 1;
	if (bpf_ringbuf_query(&records, BPF_RB_AVAIL_DATA) > RINGBUF_SIZE - MARGIN) {
		st->stopped = 1;
		st->next = idx;
		return 1;
	}
	// Bucket sizes come from the kernel's BTF: an array index would use
	// this file's declarations, which hold only the fields read here.
	if (idx < st->nlisten) {
		head = st->lhash2 + (__u64)idx * bpf_core_type_size(struct inet_listen_hashbucket) +
		       bpf_core_field_offset(struct inet_listen_hashbucket, nulls_head);
		st->listen = 1;
	} else {
		head = st->ehash + (__u64)(idx - st->nlisten) * bpf_core_type_size(struct inet_ehash_bucket) +
		       bpf_core_field_offset(struct inet_ehash_bucket, chain);
		st->listen = 0;
	}
	if (bpf_probe_read_kernel(&st->node, sizeof(st->node),
				  (void *)(head + bpf_core_field_offset(struct hlist_nulls_head, first)))) {
		stat_add(STAT_TRUNCATED, 1);
		return 0;
	}
	if (copy)
		bpf_loop(MAX_CHAIN, chain_step_copy, st, 0);
	else
		bpf_loop(MAX_CHAIN, chain_step_cast, st, 0);
	if (!(st->node & 1))
		stat_add(STAT_TRUNCATED, 1);
	return 0;
}

static long bucket_step_cast(__u64 i, struct walk_state *st) { return bucket_step(i, st, false); }
static long bucket_step_copy(__u64 i, struct walk_state *st) { return bucket_step(i, st, true); }

// walk walks the table set_root recorded from bucket ctx[0] on (listeners
// first, then established) and returns the bucket to start the next run at,
// or DONE.
static __always_inline int walk(__u64 *ctx, const bool copy)
{
	__u32 key = STAT_ROOT, fkey = STAT_FILTER, zero = 0;
	struct walk_state st = {};
	struct inet_hashinfo *h;
	__u64 *root, *filter;

	root = bpf_map_lookup_elem(&stats, &key);
	if (!root || !*root)
		return DONE;
	filter = bpf_map_lookup_elem(&stats, &fkey);
	st.filter = filter && *filter;
	if (copy) {
		st.buf = bpf_map_lookup_elem(&scratch, &zero);
		if (!st.buf)
			return DONE;
		h = (struct inet_hashinfo *)(unsigned long)*root;
		st.nlisten = BPF_CORE_READ(h, lhash2_mask) + 1;
		st.total = st.nlisten + BPF_CORE_READ(h, ehash_mask) + 1;
		st.lhash2 = (__u64)(unsigned long)BPF_CORE_READ(h, lhash2);
		st.ehash = (__u64)(unsigned long)BPF_CORE_READ(h, ehash);
	} else {
		h = CAST(struct inet_hashinfo, *root);
		st.nlisten = h->lhash2_mask + 1;
		st.total = st.nlisten + h->ehash_mask + 1;
		st.lhash2 = (__u64)(unsigned long)h->lhash2;
		st.ehash = (__u64)(unsigned long)h->ehash;
	}
	st.start = (__u32)ctx[0];
	st.now = bpf_jiffies64();
	if (st.start >= st.total)
		return DONE;
	if (copy)
		bpf_loop(st.total - st.start, bucket_step_copy, &st, 0);
	else
		bpf_loop(st.total - st.start, bucket_step_cast, &st, 0);
	return st.stopped ? st.next : DONE;
}

// walk_hash reads sockets through bpf_rdonly_cast (Linux 6.2+).
SEC("raw_tp/sys_enter")
int walk_hash(__u64 *ctx)
{
	return walk(ctx, false);
}

// walk_hash_copy copies each socket out whole with bpf_probe_read_kernel,
// for kernels without bpf_rdonly_cast (before 6.2).
SEC("raw_tp/sys_enter")
int walk_hash_copy(__u64 *ctx)
{
	return walk(ctx, true);
}

char __license[] SEC("license") = "Dual MIT/GPL";
