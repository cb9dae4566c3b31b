//! Bad input: every rejection names what is wrong and where, with libvirt's meaning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use qconform_plan::PlanErrorKind;

const X86: &str = "x86_64";

#[test]
fn test_malformed_xml_is_bad_input_with_line_and_column() {
    let e = err(
        "<domain type='qemu'>\n  <devices>\n    <disk>\n  </devices>\n</domain>\n",
        latest(X86),
    );
    assert_eq!(e.kind, PlanErrorKind::BadInput);
    assert_eq!(e.problem.line, Some(4));
    assert!(e.problem.column.is_some());
    assert!(e.problem.message.starts_with("malformed XML"), "{e}");
    let e = err("<notadomain/>", latest(X86));
    assert_eq!(e.kind, PlanErrorKind::BadInput);
    assert!(e.problem.message.contains("<domain>"));
}

#[test]
fn test_slot_out_of_range_names_element_attribute_value_and_position() {
    let xml = bare(
        X86,
        "pc",
        &nic(
            "e1000",
            "<address type='pci' domain='0x0000' bus='0x00' slot='0x20' function='0x0'/>",
        ),
    );
    let e = err(&xml, latest(X86));
    assert_eq!(
        e.problem.message,
        "Invalid PCI address slot='0x20', must be <= 0x1F"
    );
    assert_eq!(e.problem.element.as_deref(), Some("address"));
    assert_eq!(e.problem.attribute.as_deref(), Some("slot"));
    assert_eq!(e.problem.value.as_deref(), Some("0x20"));
    assert_eq!(e.problem.line, Some(10));
    assert_eq!(e.kind, PlanErrorKind::Rejected);
    let shown = e.to_string();
    assert!(
        shown.contains("attribute slot='0x20'") && shown.contains("line 10"),
        "{shown}"
    );
}

#[test]
fn test_function_above_7() {
    let xml = bare(
        X86,
        "pc",
        &nic("e1000", "<address type='pci' slot='3' function='8'/>"),
    );
    let e = err(&xml, latest(X86));
    assert_eq!(
        e.problem.message,
        "Invalid PCI address function=0x8, must be <= 7"
    );
}

#[test]
fn test_unparsable_numbers() {
    let xml = bare(
        X86,
        "pc",
        &nic("e1000", "<address type='pci' slot='three'/>"),
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem
            .message
            .contains("Expected non-negative integer value"),
        "{e}"
    );
    assert_eq!(e.problem.value.as_deref(), Some("three"));
}

#[test]
fn test_double_use_of_an_address() {
    let a = "<address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>";
    let xml = bare(X86, "pc", &(nic("e1000", a) + &nic("e1000", a)));
    let e = err(&xml, latest(X86));
    assert!(
        e.problem
            .message
            .contains("Attempted double use of PCI Address 0000:00:05.0"),
        "{e}"
    );
    assert!(e.problem.message.starts_with("net1: "), "{e}");
}

#[test]
fn test_address_on_a_builtin_function_is_refused() {
    let xml = bare(
        X86,
        "pc",
        &nic("e1000", "<address type='pci' slot='1' function='3'/>"),
    );
    let e = err(&xml, latest(X86));
    assert!(e.problem.message.contains("0000:00:01.3"), "{e}");
}

#[test]
fn test_only_domain_0() {
    let xml = bare(
        X86,
        "pc",
        &nic("e1000", "<address type='pci' domain='0x0001' slot='5'/>"),
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem.message.contains("Only PCI domain 0 is available"),
        "{e}"
    );
}

#[test]
fn test_bus_without_a_controller_on_a_non_growing_pass_is_refused() {
    // pcie-root accepts no PCI device on a switch port bus number that is not there.
    let xml = bare(
        X86,
        "q35",
        &("    <controller type='pci' index='1' model='pcie-root-port'/>\n".to_string()
            + &nic("virtio", "<address type='pci' bus='0x01' slot='0x00'/>")
            + &nic("virtio", "<address type='pci' bus='0x01' slot='0x00'/>")),
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem
            .message
            .contains("Attempted double use of PCI Address 0000:01:00.0"),
        "{e}"
    );
}

#[test]
fn test_wrong_root_model() {
    let xml = bare(
        X86,
        "q35",
        "    <controller type='pci' index='0' model='pci-root'/>\n",
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem.message.contains("The PCI controller with index='0' must be model='pcie-root' for this machine type, but model='pci-root' was found instead"),
        "{e}"
    );
}

#[test]
fn test_bridge_index_must_be_above_its_bus() {
    let xml = bare(
        X86,
        "pc",
        "    <controller type='pci' index='1' model='pci-bridge'/>\n    <controller type='pci' index='2' model='pci-bridge'><address type='pci' bus='0x02' slot='0x01'/></controller>\n",
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem.message.contains("index must be larger than bus"),
        "{e}"
    );
}

#[test]
fn test_unknown_pci_model_and_missing_attributes() {
    let e = err(
        &bare(
            X86,
            "pc",
            "    <controller type='pci' index='1' model='nonsense'/>\n",
        ),
        latest(X86),
    );
    assert!(
        e.problem
            .message
            .contains("Unknown PCI controller model 'nonsense'"),
        "{e}"
    );
    let e = err(
        &bare(X86, "pc", "    <controller index='1'/>\n"),
        latest(X86),
    );
    assert_eq!(e.problem.attribute.as_deref(), Some("type"));
    let e = err(
        &bare(
            X86,
            "pc",
            "    <disk type='file'><source file='/x'/></disk>\n",
        ),
        latest(X86),
    );
    assert!(e.problem.message.contains("target dev"), "{e}");
}

#[test]
fn test_huge_indexes_are_refused_not_allocated() {
    let e = err(
        &bare(
            X86,
            "pc",
            "    <controller type='pci' index='4000000000' model='pci-bridge'/>\n",
        ),
        latest(X86),
    );
    assert!(e.problem.message.contains("out of range"), "{e}");
    let d = "    <disk type='file' device='disk'><target dev='sda' bus='scsi'/><address type='drive' controller='99999' bus='0' target='0' unit='0'/></disk>\n";
    let e = err(&bare(X86, "pc", d), latest(X86));
    assert!(e.problem.message.contains("out of range"), "{e}");
}
