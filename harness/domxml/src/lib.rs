//! libvirt-style domain XML: parse, model, write back
