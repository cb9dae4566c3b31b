//! QEMU argv and guest-visible PCI prediction for an allocated domain
