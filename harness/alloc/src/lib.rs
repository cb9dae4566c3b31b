//! libvirt-compatible PCI/PCIe, zPCI and CCW address allocator
