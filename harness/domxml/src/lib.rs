//! libvirt-style domain XML: parse, model, write back.
//!
//! [`parse`] turns a `<domain>` document into a [`Domain`]: the machine, and every device
//! kind that can take a guest address (PCI, zPCI, CCW) with the data that decides its
//! placement. Errors name the element, attribute, value, line and column. Parse-time checks
//! follow libvirt's (number syntax, PCI slot/function/bus/domain ranges, zPCI uid range,
//! CCW ranges and partial CCW addresses), with libvirt's wording where it has one.
//!
//! Device elements we do not model are kept in [`Domain::unmodelled`] so that callers can
//! report them; nothing is silently dropped.
//!
//! [`write_back`] produces libvirt's "xml2xml" view by patching the source text: only
//! addresses, controller attributes and the machine change, new devices are appended.
//!
//! The crate is pure: it takes and returns values and does no I/O.
//!
//! ```
//! let dom = qconform_domxml::parse(
//!     "<domain type='qemu'><os><type arch='x86_64' machine='q35'>hvm</type></os>\
//!      <devices><memballoon model='virtio'/></devices></domain>",
//! ).unwrap();
//! assert_eq!(dom.machine.as_deref(), Some("q35"));
//! assert_eq!(dom.devices.len(), 1);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod model;
mod parse;
mod write;

pub use error::{Error, ErrorKind, Located, Problem};
pub use model::*;
pub use parse::{parse, parse_uint};
pub use write::{Written, address_xml, device_xml, esc, write_back};
