//! The ioctl ABI: command numbers built by `uapi.rs` equal what nix's
//! independent `_IO*` encoders and LDD3's scull.h give, and the structs have
//! the sizes the kernel side asserts.

use ldd_alloc::uapi::{self, DeviceInfo};
use nix::{request_code_none, request_code_read, request_code_readwrite, request_code_write};

#[test]
fn scull_numbers_match_ldd3() {
    let k = b'k';
    assert_eq!(uapi::SCULL_IOCRESET, request_code_none!(k, 0) as u32);
    assert_eq!(uapi::SCULL_IOCSQUANTUM, request_code_write!(k, 1, 4) as u32);
    assert_eq!(uapi::SCULL_IOCSQSET, request_code_write!(k, 2, 4) as u32);
    assert_eq!(uapi::SCULL_IOCTQUANTUM, request_code_none!(k, 3) as u32);
    assert_eq!(uapi::SCULL_IOCTQSET, request_code_none!(k, 4) as u32);
    assert_eq!(uapi::SCULL_IOCGQUANTUM, request_code_read!(k, 5, 4) as u32);
    assert_eq!(uapi::SCULL_IOCGQSET, request_code_read!(k, 6, 4) as u32);
    assert_eq!(uapi::SCULL_IOCQQUANTUM, request_code_none!(k, 7) as u32);
    assert_eq!(uapi::SCULL_IOCQQSET, request_code_none!(k, 8) as u32);
    assert_eq!(
        uapi::SCULL_IOCXQUANTUM,
        request_code_readwrite!(k, 9, 4) as u32
    );
    assert_eq!(
        uapi::SCULL_IOCXQSET,
        request_code_readwrite!(k, 10, 4) as u32
    );
    assert_eq!(uapi::SCULL_IOCHQUANTUM, request_code_none!(k, 11) as u32);
    assert_eq!(uapi::SCULL_IOCHQSET, request_code_none!(k, 12) as u32);
    // The values a C program including LDD3's scull.h computes on x86-64.
    assert_eq!(uapi::SCULL_IOCSQUANTUM, 0x4004_6b01);
    assert_eq!(uapi::SCULL_IOCGQUANTUM, 0x8004_6b05);
}

#[test]
fn own_numbers_encode_size_and_direction() {
    assert_eq!(
        uapi::LDD_IOC_INFO,
        request_code_read!(b'k', 32, std::mem::size_of::<DeviceInfo>()) as u32
    );
    assert_eq!(
        uapi::LDD_IOC_SET_BACKEND,
        request_code_none!(b'k', 33) as u32
    );
    assert_eq!(uapi::ioc_size(uapi::LDD_IOC_INFO), 56);
    assert_eq!(uapi::ioc_nr(uapi::LDD_IOC_INFO), 32);
    assert_eq!(uapi::ioc_type(uapi::LDD_IOC_INFO), b'k');
}

#[test]
fn struct_layouts_have_no_padding() {
    assert_eq!(std::mem::size_of::<DeviceInfo>(), 56);
    assert_eq!(std::mem::align_of::<DeviceInfo>(), 8);
}
