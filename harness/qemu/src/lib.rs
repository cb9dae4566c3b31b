//! QEMU processes and QMP: probe binaries, run argv live, boot guests
