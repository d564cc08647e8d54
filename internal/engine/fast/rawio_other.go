//go:build !linux

package fast

import "syscall"

// Elsewhere sockets use net.Conn's own Read and Write (sock.init leaves
// raw false; rc is still set for flush-then-wait), so these are never
// called.
const rawSupported = false

func rawRead(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.EINVAL }
func rawWrite(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }
