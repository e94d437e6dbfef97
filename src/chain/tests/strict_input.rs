//! Input the SDK refuses is refused here too (issue 14 #5): addresses are `0x` + 40 hex digits,
//! decimals are canonical (no sign `+`, whitespace, leading zeros, `-0`).

use peaqos_chain::validation::{parse_address, MachineIdInput, ValueInput};

#[test]
fn addresses_need_0x_and_40_hex_digits() {
    let good = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    parse_address("did_address", good).unwrap();
    parse_address("did_address", &good.to_lowercase()).unwrap();
    for bad in [
        "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0Xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        " 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 ",
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb9226",
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb922666",
        "0xg39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x",
        "",
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n",
    ] {
        let e = parse_address("did_address", bad).expect_err(bad);
        assert_eq!(e.field(), "did_address", "{bad:?}: {e}");
    }
}

#[test]
fn values_and_machine_ids_are_canonical_decimals() {
    assert!(matches!(ValueInput::parse("5"), ValueInput::Int { negative: false, .. }));
    assert!(matches!(ValueInput::parse("0"), ValueInput::Int { negative: false, .. }));
    assert!(matches!(ValueInput::parse("-5"), ValueInput::Int { negative: true, .. }));
    assert_eq!(ValueInput::parse("1.5"), ValueInput::NotInt { type_name: "float".into() });
    for bad in [" 5", "5 ", "+5", "05", "-0", "5\n", "\t5", "", "-", "0x5", "5_0", "٥"] {
        assert!(matches!(ValueInput::parse(bad), ValueInput::NotInt { .. }), "{bad:?}");
    }
    MachineIdInput::from_decimal("machine_id", "6812").unwrap();
    for bad in [" 5", "\t5", "5 ", "05", "+5", "-5", "-0", ""] {
        let e = MachineIdInput::from_decimal("machine_id", bad).expect_err(bad);
        assert_eq!(e.field(), "machine_id", "{bad:?}");
    }
}
