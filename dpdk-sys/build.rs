//! Finds the system DPDK with pkg-config, compiles the C shim for DPDK's static inline functions with
//! the same flags DPDK's own applications use, and runs bindgen over the headers weft needs.

use std::env;
use std::path::PathBuf;

const MIN_DPDK: &str = "22.11";

fn main() {
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = match pkg_config::Config::new().atleast_version(MIN_DPDK).cargo_metadata(true).probe("libdpdk") {
        Ok(lib) => lib,
        Err(err) => {
            eprintln!(
                "\nerror: weft needs DPDK >= {MIN_DPDK} found through pkg-config (libdpdk.pc).\n\
                 On Debian 12 install it with:\n    apt-get install dpdk dpdk-dev libdpdk-dev pkg-config\n\
                 or run `make setup` as root.\npkg-config said: {err}\n"
            );
            std::process::exit(1);
        }
    };

    // `-include rte_config.h -march=corei7` and friends: DPDK's headers are only correct with these.
    let other_flags = pkg_config_flags(&["--cflags-only-other", "libdpdk"]);

    let mut shim = cc::Build::new();
    shim.file("src/shim.c").opt_level(3).warnings(true);
    for inc in &dpdk.include_paths {
        shim.include(inc);
    }
    for flag in &other_flags {
        shim.flag(flag);
    }
    shim.compile("weft_dpdk_shim");

    let mut builder = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_arg("-Isrc")
        .allowlist_function("rte_.*|weft_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        // These DPDK 22.11 types carry bitfield layouts bindgen cannot reproduce; their generated code
        // does not compile. weft never looks inside them.
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_gtp_psc_.*")
        .opaque_type("rte_flow_item_(l2tpv2|gtp_psc)")
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for inc in &dpdk.include_paths {
        builder = builder.clang_arg(format!("-I{}", inc.display()));
    }
    for flag in &other_flags {
        builder = builder.clang_arg(flag);
    }
    let bindings = match builder.generate() {
        Ok(b) => b,
        Err(err) => {
            eprintln!(
                "\nerror: bindgen could not read the DPDK headers ({err}).\n\
                 It needs libclang: apt-get install clang libclang-dev\n"
            );
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs into OUT_DIR");
}

/// The whitespace-separated words pkg-config prints for `args`.
fn pkg_config_flags(args: &[&str]) -> Vec<String> {
    let output = std::process::Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
        .args(args)
        .output()
        .expect("pkg-config runs (it found libdpdk a moment ago)");
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    // `-include rte_config.h` is two words that must stay together and in order: keep them as given.
}
