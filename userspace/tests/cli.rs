//! The command line and the pure helpers behind it: argument parsing, GFP
//! names, sizes and handles.

use clap::Parser;
use ldd_alloc::cli::{parse_handle, parse_size, Cli, Cmd, ScullCmd};
use ldd_alloc::device::{backend_by_name, backend_name, gfp_names, parse_gfp};
use ldd_alloc::uapi::gfp;

#[test]
fn sizes_and_handles() {
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("4k"), Ok(4096));
    assert_eq!(parse_size("16M"), Ok(16 << 20));
    assert_eq!(parse_size("1G"), Ok(1 << 30));
    assert!(parse_size("k").is_err());
    assert!(parse_size("-1").is_err());
    assert!(parse_size("99999999999999999999G").is_err());
    assert_eq!(parse_handle("0x10001"), Ok(0x10001));
    assert_eq!(parse_handle("65537"), Ok(65537));
    assert!(parse_handle("0xzz").is_err());
}

#[test]
fn gfp_flags_parse_and_print() {
    assert_eq!(parse_gfp("GFP_KERNEL"), Ok(gfp::KERNEL));
    assert_eq!(parse_gfp("KERNEL|__GFP_ZERO"), Ok(gfp::KERNEL | gfp::ZERO));
    assert_eq!(parse_gfp("atomic, dma"), Ok(gfp::ATOMIC | gfp::DMA));
    assert_eq!(parse_gfp("__GFP_REPEAT"), Ok(gfp::REPEAT));
    assert!(parse_gfp("GFP_BOGUS").is_err());
    assert_eq!(gfp_names(gfp::KERNEL), "GFP_KERNEL");
    assert_eq!(gfp_names(gfp::KERNEL | gfp::ZERO), "GFP_KERNEL|__GFP_ZERO");
    assert_eq!(gfp_names(0), "0");
    // Every named flag survives a round trip through its name.
    for (name, bits) in gfp::NAMES {
        assert_eq!(parse_gfp(name), Ok(bits), "{name}");
        assert_eq!(parse_gfp(&gfp_names(bits)), Ok(bits), "{name}");
    }
    // The removed 2.6 flags are outside what this kernel knows.
    for (bit, _, _) in gfp::REMOVED {
        assert_eq!(bit & gfp::KNOWN, 0);
    }
    assert_eq!(
        gfp::VMALLOC_SUPPORTED & (gfp::DMA | gfp::DMA32 | gfp::HIGHMEM),
        0
    );
}

#[test]
fn backends_by_name() {
    for name in ["kmalloc", "cache", "pages", "vmalloc", "mempool"] {
        let b = backend_by_name(name).expect(name);
        assert_eq!(backend_name(b), name);
    }
    assert_eq!(backend_by_name("slab"), None);
}

#[test]
fn commands_parse() {
    let cli = Cli::try_parse_from(["ldd-alloc", "--json", "-d", "2", "info"]).unwrap();
    assert!(cli.json);
    assert_eq!(cli.dev, 2);
    assert!(matches!(cli.cmd, Cmd::Info));

    let cli = Cli::try_parse_from([
        "ldd-alloc",
        "alloc",
        "kmalloc",
        "--size",
        "4k",
        "--gfp",
        "GFP_ATOMIC",
        "--context",
        "atomic",
        "-n",
        "3",
    ])
    .unwrap();
    match cli.cmd {
        Cmd::Alloc(a) => {
            assert_eq!((a.backend.as_str(), a.size, a.count), ("kmalloc", 4096, 3));
            assert_eq!(
                (a.gfp.as_str(), a.context.as_str(), a.keep),
                ("GFP_ATOMIC", "atomic", false)
            );
        }
        other => panic!("{other:?}"),
    }

    let cli = Cli::try_parse_from(["ldd-alloc", "scull", "seek", "cur", "-5"]).unwrap();
    assert!(
        matches!(cli.cmd, Cmd::Scull(ScullCmd::Seek { ref whence, offset: -5 }) if whence == "cur")
    );
    let cli =
        Cli::try_parse_from(["ldd-alloc", "scull", "backend", "pages", "--order", "2"]).unwrap();
    assert!(
        matches!(cli.cmd, Cmd::Scull(ScullCmd::Backend { ref name, order: 2 }) if name == "pages")
    );
    let cli = Cli::try_parse_from(["ldd-alloc", "free", "0x10001", "7"]).unwrap();
    assert!(matches!(cli.cmd, Cmd::Free { ref handles, all: false } if handles.len() == 2));

    assert!(
        Cli::try_parse_from(["ldd-alloc", "alloc"]).is_err(),
        "a backend is required"
    );
    assert!(Cli::try_parse_from(["ldd-alloc", "alloc", "kmalloc", "--size", "lots"]).is_err());
    assert!(Cli::try_parse_from(["ldd-alloc", "nonsense"]).is_err());
}
