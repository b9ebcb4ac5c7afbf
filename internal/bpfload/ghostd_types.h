/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */
/*
 * The kernel's integer types, declared by hand for the BPF programs
 * (probe/bpf, inventory/bpfwalk, inventory/bpfowners), which include this
 * before <bpf/bpf_helpers.h> instead of a full vmlinux.h. Their go:generate
 * lines add -I../../internal/bpfload.
 */
#ifndef GHOSTD_TYPES_H
#define GHOSTD_TYPES_H

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

#endif /* GHOSTD_TYPES_H */
