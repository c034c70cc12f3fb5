"""A minimal KVM VMM that made the captures beside it (``vmm-*.txt``; see README.md).

One vCPU in 64-bit user mode (CPL 3, which this host's shadow-paging KVM backend runs natively)
writes one byte to each of PAGES 4 KiB pages from 1 MiB and to as many pages of a 2 MiB page at
2 MiB, then exits to the VMM with an ``out``; ROUNDS runs. Closing the VM zaps its page tables.
Run as root: ``python3 vmm.py PAGES ROUNDS``.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
MEM = 4 << 20
CODE = 0x4000


def segment(buf: bytearray, off: int, selector: int, type_: int, long_mode: int, db: int) -> None:
    """A struct kvm_segment: flat, present, DPL 3 (user mode)."""
    fields = (0, 0xFFFFFFFF, selector, type_, 1, 3, db, 1, long_mode, 1, 0, 0, 0)
    struct.pack_into("QIHBBBBBBBBBB", buf, off, *fields)


def guest_code(pages: int) -> bytes:
    """Write a byte to each page of [1 MiB, +pages) and [2 MiB, +pages), then ``out 0x10``."""

    def loop(start: int) -> bytes:
        # mov ebx, start; again: mov byte [rbx], 1; add rbx, 0x1000; cmp rbx, end; jne again
        return (
            b"\xbb"
            + struct.pack("<I", start)
            + b"\xc6\x03\x01"
            + b"\x48\x81\xc3\x00\x10\x00\x00"
            + b"\x48\x81\xfb"
            + struct.pack("<I", start + 0x1000 * pages)
            + b"\x75\xed"
        )

    return loop(0x100000) + loop(0x200000) + b"\xe6\x10"


def main(pages: int, rounds: int) -> None:
    """Run the guest ``rounds`` times."""
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    assert fcntl.ioctl(kvm, KVM_GET_API_VERSION) == 12
    vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    mem = mmap.mmap(
        -1, MEM, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE
    )
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, struct.pack("IIQQQ", 0, 0, 0, MEM, addr))
    # Identity page tables: PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000; PD[0] -> PT 0x10000
    # (4 KiB pages of the first 2 MiB), PD[1] one 2 MiB page. All user-accessible (bit 2).
    struct.pack_into("Q", mem, 0x1000, 0x2000 | 7)
    struct.pack_into("Q", mem, 0x2000, 0x3000 | 7)
    struct.pack_into("Q", mem, 0x3000, 0x10000 | 7)
    struct.pack_into("Q", mem, 0x3008, 0x200000 | 0x87)
    for i in range(512):
        struct.pack_into("Q", mem, 0x10000 + 8 * i, (i << 12) | 7)
    code = guest_code(pages)
    mem[CODE : CODE + len(code)] = code
    vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
    run = mmap.mmap(vcpu, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    for r in range(rounds):
        sregs = bytearray(312)
        fcntl.ioctl(vcpu, KVM_GET_SREGS, sregs)
        segment(sregs, 0, 0x1B, 11, 1, 0)  # cs: 64-bit code, RPL 3
        for i in range(1, 6):  # ds, es, fs, gs, ss
            segment(sregs, 24 * i, 0x23, 3, 0, 1)
        # cr0 (PE, MP, ET, NE, WP, AM, PG), cr2, cr3, cr4 (PAE), cr8, efer (LME, LMA)
        struct.pack_into("QQQQQQ", sregs, 224, 0x80050033, 0, 0x1000, 0x20, 0, 0x500)
        fcntl.ioctl(vcpu, KVM_SET_SREGS, sregs)
        regs = bytearray(144)
        struct.pack_into("QQ", regs, 16 * 8, CODE, 0x3002)  # rip; rflags with IOPL 3
        fcntl.ioctl(vcpu, KVM_SET_REGS, regs)
        fcntl.ioctl(vcpu, KVM_RUN, 0)
        print("round", r, "exit reason", struct.unpack_from("I", run, 8)[0])
    run.close()
    for fd in (vcpu, vm, kvm):
        os.close(fd)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
