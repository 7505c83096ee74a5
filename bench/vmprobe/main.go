// Command vmprobe measures what this machine charges for the memory and
// disk operations a badger-backed server does on every message: a page
// fault on fresh anonymous memory (the Go heap growing), a write fault on
// a file mapping (badger writes its write-ahead log and its tables through
// mmap), the same bytes written with write(2), and fdatasync after each.
// On bare metal a fault costs well under a microsecond; on some virtual
// machines it costs tens (bench/README.md, "Replication on vs off: what the
// sending server paid for"), which then dominates a benchmark's CPU per
// message. It also prints which CPU takes the disks' interrupts.
//
//	go run ./bench/vmprobe [-mb 64] [-dir /tmp]
//
// It writes two files of -mb megabytes in -dir and removes them.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const page = 4096

func cpu() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perPage reports the CPU fn took per page of n bytes.
func perPage(label string, n int, fn func() error) {
	c0 := cpu()
	if err := fn(); err != nil {
		fmt.Fprintf(os.Stderr, "vmprobe: %s: %v\n", label, err)
		os.Exit(1)
	}
	fmt.Printf("%-46s %8.2f µs CPU per 4 KB page\n", label, float64(cpu()-c0)/1e3/float64(n/page))
}

func touch(b []byte) error {
	for i := 0; i < len(b); i += page {
		b[i] = 1
	}
	return nil
}

func main() {
	mb := flag.Int("mb", 64, "megabytes per measurement")
	dir := flag.String("dir", os.TempDir(), "directory for the test files")
	flag.Parse()
	n := *mb << 20

	anon, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmprobe:", err)
		os.Exit(1)
	}
	perPage("anonymous memory, first touch", n, func() error { return touch(anon) })
	perPage("anonymous memory, touched again", n, func() error { return touch(anon) })
	syscall.Munmap(anon)

	mapped := filepath.Join(*dir, fmt.Sprintf("vmprobe-mmap-%d", os.Getpid()))
	written := filepath.Join(*dir, fmt.Sprintf("vmprobe-write-%d", os.Getpid()))
	defer os.Remove(mapped)
	defer os.Remove(written)

	f, err := os.OpenFile(mapped, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmprobe:", err)
		os.Exit(1)
	}
	defer f.Close()
	if err := f.Truncate(int64(n)); err != nil {
		fmt.Fprintln(os.Stderr, "vmprobe:", err)
		os.Exit(1)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmprobe:", err)
		os.Exit(1)
	}
	perPage("file mapping, first write (as badger's log)", n, func() error { return touch(m) })
	perPage("fdatasync of the mapped file", n, func() error { return syscall.Fdatasync(int(f.Fd())) })
	perPage("file mapping, write after the sync", n, func() error { return touch(m) })
	syscall.Munmap(m)

	g, err := os.OpenFile(written, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmprobe:", err)
		os.Exit(1)
	}
	defer g.Close()
	buf := make([]byte, 1<<20)
	perPage("write(2) of the same bytes, 1 MB at a time", n, func() error {
		for i := 0; i < n; i += len(buf) {
			if _, err := g.Write(buf); err != nil {
				return err
			}
		}
		return nil
	})
	perPage("fdatasync of the written file", n, func() error { return syscall.Fdatasync(int(g.Fd())) })

	if cpu, name := diskIRQ(); name != "" {
		fmt.Printf("disk interrupts: most on CPU %d (%s)\n", cpu, name)
	}
}

// diskIRQ finds the CPU that took most block-device interrupts in
// /proc/interrupts (virtio-blk, NVMe, SCSI/ATA).
func diskIRQ() (int, string) {
	f, err := os.Open("/proc/interrupts")
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, ""
	}
	ncpu := len(strings.Fields(sc.Text()))
	counts := make([]int64, ncpu)
	var names []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < ncpu+1 {
			continue
		}
		name := fields[len(fields)-1]
		if !isDisk(name) {
			continue
		}
		names = append(names, name)
		for c := 0; c < ncpu; c++ {
			var v int64
			fmt.Sscan(fields[1+c], &v)
			counts[c] += v
		}
	}
	best := 0
	for c := range counts {
		if counts[c] > counts[best] {
			best = c
		}
	}
	if len(names) == 0 || counts[best] == 0 {
		return 0, ""
	}
	return best, strings.Join(names, ", ")
}

func isDisk(name string) bool {
	for _, p := range []string{"-req.", "nvme", "blkif", "ahci", "ata_piix", "scsi", "megasas", "mpt"} {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}
